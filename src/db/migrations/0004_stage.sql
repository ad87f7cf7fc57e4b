-- The stage slot: a release running beside the live one at stage.<app>.<domain>, promoted by `pier promote`.
-- A staged release's status is 'staged' once its stage instance is ready.
ALTER TABLE apps ADD COLUMN stage_release_id bigint REFERENCES releases(id) ON DELETE SET NULL;
