-- PostgreSQL add-on databases being made. A row is committed before the add-on's CREATE ROLE and CREATE DATABASE
-- (which cannot run in a transaction), and deleted in the transaction that records the add-on, or once what was
-- made is dropped again. One that a nexus killed midway left behind names a role and database nobody records:
-- the leader drops those after a while. One owner: src/db/pending-databases.ts.
CREATE TABLE addon_pending_databases (
  -- The role's and the database's name (the same), on the services server.
  name        text PRIMARY KEY,
  -- The add-on it was being made for (for the operator's log).
  addon_name  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
