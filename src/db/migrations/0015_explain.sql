-- `pier explain` reads one app's events in a time window, newest first (the timeline keeps the newest entries
-- when it is cut), and for each node.down/up in the window whether the app had an instance on that runner then.
CREATE INDEX events_app_created_idx ON events (app, created_at, id);
CREATE INDEX events_app_type_idx ON events (app, type, id);
CREATE INDEX events_node_idx ON events ((data->>'id'), id) WHERE app IS NULL AND type IN ('node.down', 'node.up');
CREATE INDEX events_node_created_idx ON events (created_at) WHERE app IS NULL AND type IN ('node.down', 'node.up');
