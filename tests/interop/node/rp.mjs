// A relying party built on openid-client 6 (strict, spec-following defaults) and jose 6, driven
// one step at a time by tests/interop through JSON: the step's input on stdin, its result on
// stdout ({"ok": ...} or {"error": ...}). The browser step (the login form) stays in the test.
import * as client from 'openid-client';
import * as jose from 'jose';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function configure(input) {
  const secret = input.client_secret;
  const auth = secret ? client.ClientSecretBasic(secret) : client.None();
  const metadata = secret ? {} : { token_endpoint_auth_method: 'none' };
  // The test servers listen on http://127.0.0.1: allow plain HTTP, nothing else is relaxed.
  return client.discovery(new URL(input.issuer), input.client_id, metadata, auth, {
    execute: [client.allowInsecureRequests],
  });
}

function tokens(result) {
  const { claims: _claims, expiresIn: _expiresIn, ...body } = result;
  return { tokens: { ...body }, claims: result.claims() ?? null };
}

const steps = {
  async metadata(config) {
    return config.serverMetadata();
  },

  async authorize(config, input) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: input.redirect_uri,
      scope: input.scope ?? 'openid email',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    return { url: url.href, verifier, state, nonce };
  },

  async callback(config, input) {
    const result = await client.authorizationCodeGrant(config, new URL(input.callback_url), {
      pkceCodeVerifier: input.verifier,
      expectedState: input.state,
      expectedNonce: input.nonce,
      idTokenExpected: true,
    });
    return tokens(result);
  },

  async userinfo(config, input) {
    return client.fetchUserInfo(config, input.access_token, input.sub);
  },

  async refresh(config, input) {
    return tokens(await client.refreshTokenGrant(config, input.refresh_token));
  },

  async client_credentials(config, input) {
    const params = input.scope ? { scope: input.scope } : {};
    return tokens(await client.clientCredentialsGrant(config, params));
  },

  async logout_url(config, input) {
    const params = { post_logout_redirect_uri: input.post_logout_redirect_uri };
    if (input.id_token_hint) params.id_token_hint = input.id_token_hint;
    if (input.state) params.state = input.state;
    return { url: client.buildEndSessionUrl(config, params).href };
  },

  // JWKS verification with jose, independently of openid-client's own checks.
  async verify(config, input) {
    const meta = config.serverMetadata();
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri), {
      [jose.customFetch]: fetch,
    });
    const { payload, protectedHeader } = await jose.jwtVerify(input.token, jwks, {
      issuer: meta.issuer,
      audience: input.audience,
      algorithms: ['RS256'],
    });
    return { payload, header: protectedHeader };
  },
};

function describe(err) {
  const out = { name: err?.name, code: err?.code, message: String(err?.message ?? err) };
  for (const key of ['error', 'error_description', 'status']) {
    if (err?.[key] !== undefined) out[key] = err[key];
  }
  if (err instanceof client.WWWAuthenticateChallengeError || err?.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE') {
    out.challenges = err.cause;
    out.status = err.response?.status ?? err.status;
  }
  if (err?.cause && typeof err.cause === 'object' && !out.challenges) {
    out.cause = Object.fromEntries(
      Object.entries(err.cause).filter(([, v]) => ['string', 'number', 'boolean'].includes(typeof v)),
    );
  }
  return out;
}

const input = await readStdin();
try {
  const step = steps[input.step];
  if (!step) throw new Error(`unknown step ${input.step}`);
  const config = await configure(input);
  process.stdout.write(JSON.stringify({ ok: await step(config, input) }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: describe(err) }));
}
