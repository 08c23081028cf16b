-- 1.5: a subscription canceled at the end of its current period (ADR 0237).
-- Expand only: one column with a default, so 1.4 code keeps working.

-- Set: the invoice run that bills the current period cancels the subscription instead of
-- renewing it; cleared before that, the subscription renews as usual.
ALTER TABLE billing_subscriptions ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false;
