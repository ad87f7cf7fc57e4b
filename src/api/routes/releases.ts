/** /v1/apps/:app/releases (upload a tar.gz = deploy), /formation (scale), /instances (ps). */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { PierError } from '../../core/errors.js';
import {
  admitReleaseTypes, createRelease, getFormation, getRelease, listInstances, listReleases, mutate, promoteStage, recordArtifactProcesses, resolveApp,
  rollbackRelease, setFormation, storeArtifact,
} from '../../db/index.js';
import { AppParams, FormationBody, FormationQuery, ReleaseParams, ReleaseQuery, RollbackBody } from '../../protocol/index.js';
import { beforeBody } from '../auth.js';
import { deployClaim, idempotencyKey, principalOf, withDeployLock, type ApiContext } from '../context.js';
import type { UploadChecker } from '../upload-checker.js';

export function releaseRoutes(app: FastifyInstance, ctx: ApiContext, maxReleaseBytes: number, log: Logger, checker: UploadChecker): void {
  // Release bodies are raw tar.gz bytes.
  app.addContentTypeParser(['application/gzip', 'application/x-gzip', 'application/octet-stream'], { parseAs: 'buffer', bodyLimit: maxReleaseBytes }, (_req, body, done) => done(null, body));

  app.post<{ Params: AppParams; Querystring: ReleaseQuery; Body: Buffer }>(
    '/v1/apps/:app/releases',
    {
      schema: { params: AppParams, querystring: ReleaseQuery },
      bodyLimit: maxReleaseBytes,
      // Up to maxReleaseBytes are read only for the owner of an existing app: another owner's app is a 404 first.
      onRequest: beforeBody(log, async (request) => {
        const name = (request.params as AppParams).app; // not validated yet: that happens after onRequest
        if (name.length > 64) throw new PierError('PIER_VALIDATION', 'params.app must NOT have more than 64 characters');
        await resolveApp(ctx.pool, await principalOf(ctx, request), name);
      }),
    },
    async (request, reply) => {
      const principal = await principalOf(ctx, request);
      if (!Buffer.isBuffer(request.body)) {
        throw new PierError('PIER_BAD_REQUEST', 'send the release as a tar.gz body with Content-Type: application/gzip');
      }
      // Off the event loop (a worker thread): the body moves there and back, so use `bytes` from here on.
      const { summary, processes: spec, bytes } = await checker.check(request.body);
      const claim = deployClaim(ctx, request, principal);
      const release = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'release.create', async (tx) => {
        const ref = await resolveApp(tx, principal, request.params.app, true);
        const sha256 = await storeArtifact(tx, bytes);
        const processes = { processes: spec.processes, hasWeb: spec.hasWeb };
        await recordArtifactProcesses(tx, sha256, processes);
        await admitReleaseTypes(tx, ref, processes);
        const isStage = request.query.stage === '1' || request.query.stage === 'true';
        return createRelease(tx, ref, sha256, principal.ownerId, request.query.description ?? `upload of ${summary.files} files`, { stage: isStage, claim, strategy: request.query.strategy ?? 'bluegreen', ...(summary.hasReleasePhase ? { releasePhase: 'run' as const } : {}) });
      }));
      return reply.status(201).send({ release });
    },
  );

  app.post<{ Params: AppParams; Body: RollbackBody }>('/v1/apps/:app/rollback', { schema: { params: AppParams, body: RollbackBody } }, async (request, reply) => {
    const principal = await principalOf(ctx, request);
    const claim = deployClaim(ctx, request, principal);
    const release = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'release.rollback', async (tx) => {
      const ref = await resolveApp(tx, principal, request.params.app, true);
      return rollbackRelease(tx, ref, request.body?.version, principal.ownerId, claim);
    }));
    return reply.status(201).send({ release });
  });

  app.post<{ Params: AppParams }>('/v1/apps/:app/promote', { schema: { params: AppParams } }, async (request, reply) => {
    const principal = await principalOf(ctx, request);
    const claim = deployClaim(ctx, request, principal);
    const release = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'release.promote', async (tx) => {
      const ref = await resolveApp(tx, principal, request.params.app, true);
      return promoteStage(tx, ref, claim);
    }));
    return reply.status(201).send({ release });
  });

  app.get<{ Params: AppParams }>('/v1/apps/:app/releases', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { releases: await listReleases(ctx.pool, ref) };
  });

  app.get<{ Params: ReleaseParams }>('/v1/apps/:app/releases/:version', { schema: { params: ReleaseParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    const version = Number(request.params.version.replace(/^v/, ''));
    const release = await getRelease(ctx.pool, ref, version);
    if (!release) throw new PierError('PIER_NOT_FOUND', `release v${version} of app '${ref.name}' not found; run 'pier releases -a ${ref.name}'`);
    const instances = (await listInstances(ctx.pool)).filter((i) => i.app === ref.name && i.release === version);
    const url = ctx.appUrl(ref.name);
    const { rows } = await ctx.pool.query<{ until: Date }>(
      `SELECT a.verdict_until AS until FROM apps a JOIN releases r ON r.id = a.live_release_id
       WHERE a.id = $1 AND r.version = $2 AND a.verdict_until IS NOT NULL`,
      [ref.id, version],
    );
    // While the live-traffic verdict watches this release: until when (the previous release stays up meanwhile).
    const verdict = rows[0] ? { until: rows[0].until.getTime() } : null;
    return { release, instances, url, stageUrl: url.replace('://', `://stage.`), verdict };
  });

  app.get<{ Params: AppParams }>('/v1/apps/:app/instances', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { instances: (await listInstances(ctx.pool)).filter((i) => i.app === ref.name) };
  });

  app.get<{ Params: AppParams }>('/v1/apps/:app/formation', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return getFormation(ctx.pool, ref);
  });

  app.patch<{ Params: AppParams; Body: FormationBody; Querystring: FormationQuery }>('/v1/apps/:app/formation', {
    schema: { params: AppParams, body: FormationBody, querystring: FormationQuery },
  }, async (request) => {
    const principal = await principalOf(ctx, request);
    const singleton = request.query.singleton === undefined ? undefined : request.query.singleton === 'true' || request.query.singleton === '1';
    return mutate(ctx.pool, idempotencyKey(request, principal), 'formation.change', async (tx) => {
      const ref = await resolveApp(tx, principal, request.params.app, true);
      return setFormation(tx, ref, request.body, singleton === undefined ? {} : { singleton });
    });
  });
}
