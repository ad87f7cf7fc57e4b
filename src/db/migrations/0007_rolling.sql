-- Rolling deploys: a release's strategy, and instances of a not-yet-live release that balancers already route to
-- (a rolling deploy routes each runner's new instances as soon as they are ready, then retires that runner's old ones).
ALTER TABLE releases ADD COLUMN strategy text NOT NULL DEFAULT 'bluegreen';
ALTER TABLE instances ADD COLUMN routed boolean NOT NULL DEFAULT false;
