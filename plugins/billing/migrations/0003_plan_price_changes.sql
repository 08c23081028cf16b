-- 1.2: plans and customers change and are removed (ADR 0223).
-- Expand only: one nullable column, so 1.1 code keeps working.

-- The price the current period's base line bills when the plan's price changed after the
-- period started (NULL: the plan's own): a new price starts with each subscription's next period.
ALTER TABLE billing_subscriptions ADD COLUMN period_price numeric(14, 2)
    CHECK (period_price >= 0);

ALTER TABLE billing_plans ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
