#!/bin/sh
# Makes (or updates) the platform's MinIO user and its policy with the root keys (ADR 0220): run
# by the chart's minio-users Job and Compose's minio-users service, in the MinIO image (its mc).
# Idempotent: `policy create` and `user add` replace what is there (a new platform secret takes
# effect), attaching a policy already attached is no change.
set -eu
: "${MINIO_URL:?}" "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${POLICY_NAME:?}"
: "${PLATFORM_ACCESS_KEY:?}" "${PLATFORM_SECRET_KEY:?}"
policy="${PLATFORM_POLICY_FILE:-$(dirname "$0")/storage-platform-policy.json}"
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/mc}"
until mc alias set root "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" > /dev/null \
    && mc admin info root > /dev/null; do
  echo "waiting for $MINIO_URL"
  sleep 3
done
mc admin policy create root "$POLICY_NAME" "$policy"
mc admin user add root "$PLATFORM_ACCESS_KEY" "$PLATFORM_SECRET_KEY"
if ! out=$(mc admin policy attach root "$POLICY_NAME" --user "$PLATFORM_ACCESS_KEY" 2>&1); then
  case "$out" in
    *"already in effect"*|*"has no net effect"*) ;;  # attached before (wording by mc version)
    *) echo "$out" >&2; exit 1 ;;
  esac
fi
echo "MinIO user $PLATFORM_ACCESS_KEY has policy $POLICY_NAME"
