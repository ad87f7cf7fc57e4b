-- The deploy lock a release was made under (`deploy:<app>` in locks), and whether the release owns it: a lock the
-- API took for this deploy is renewed by the leader while the release is pending and released when it settles; a
-- lock the caller holds (Pier-Lock-Token) stays the caller's to release.
ALTER TABLE releases ADD COLUMN lock_token bigint;
ALTER TABLE releases ADD COLUMN owns_lock boolean NOT NULL DEFAULT false;
