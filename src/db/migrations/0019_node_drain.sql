-- A runner an operator drains (`pier nodes:drain`): nothing new is placed on it and what runs there moves to other
-- runners, web instances starting elsewhere before they stop there. NULL: not draining. A re-registering runner
-- keeps it (like a cordon). One owner: src/db/nodes.ts.
ALTER TABLE nodes ADD COLUMN draining_since timestamptz;
