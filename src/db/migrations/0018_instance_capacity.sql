-- How many requests an instance serves at once (uWSGI processes x threads), as its runner reports it: a balancer
-- keeps fewer connections to it than that (balancer/upstreams.ts), since each kept-alive connection holds a thread.
-- NULL for rows from before it was reported.
ALTER TABLE instances ADD COLUMN capacity integer CHECK (capacity BETWEEN 1 AND 65535);
