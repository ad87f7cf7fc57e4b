import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { checkStaticMaxAge, staticMaxAgeS, staticOptions } from '../../src/runner/static-routes.js';
import { checkEnvVar, renderVassal, type VassalSpec } from '../../src/runner/vassal.js';

const base: VassalSpec = {
  name: 'st-app-1', appDir: '/srv/r/app', wsgi: { module: 'wsgi', callable: 'application' }, port: 20001, processes: 1, threads: 4, env: {},
};
const serving = { mounts: [{ prefix: '/static/admin/', dir: '/srv/r/app/vendor' }, { prefix: '/static/', dir: '/srv/r/app/staticfiles' }], maxAgeS: 600 };

describe('static routes in the vassal', () => {
  it('loads router_static and jumps into the static branch before the chunking rules', () => {
    const lines = renderVassal({ ...base, static: serving }).split('\n');
    expect(lines).toContain('plugins = python3,transformation_chunked,router_static');
    const jump = lines.indexOf('response-route-if = startswith:${PATH_INFO};/static/ goto:pier-static-response');
    const chunking = lines.indexOf('response-route-if = empty:${PIER_CL} chunked:');
    expect(jump).toBeGreaterThan(0);
    expect(jump).toBeLessThan(chunking);
    // Longest prefix first, each served from its own folder, and every other request goes on to the app.
    expect(lines.indexOf('route-uri = ^/static/admin/ goto:pier-static-0')).toBeLessThan(lines.indexOf('route-uri = ^/static/ goto:pier-static-1'));
    expect(lines).toContain('route = ^/static/admin/(.*)$ static-next:/srv/r/app/vendor/$1');
    expect(lines).toContain('route-run = last:');
    expect(lines).toContain('response-route-run = addheader:Cache-Control: public, max-age=600');
    // '%' is doubled for uWSGI's ini reader (a single one is a magic variable).
    expect(lines).toContain('route-uri = ^[^?]*(/\\.\\.?(/|\\?|$)|%%2[eEfF]|%%5[cC]|%%00|\\\\) return:404');
    expect(lines.filter((l) => l.startsWith('offload-threads'))).toEqual([]);
  });

  it('leaves a vassal without static mounts as it was', () => {
    expect(renderVassal({ ...base, static: { mounts: [], maxAgeS: 1 } })).toBe(renderVassal(base));
  });

  it('refuses a folder or max-age it cannot write safely', () => {
    expect(() => staticOptions({ mounts: [{ prefix: '/s/', dir: 'relative' }], maxAgeS: 1 })).toThrow(ValidationError);
    expect(() => staticOptions({ mounts: [{ prefix: '/s/', dir: '/srv/$(x)' }], maxAgeS: 1 })).toThrow("static folder '/srv/$(x)'");
    expect(() => staticOptions({ mounts: [{ prefix: '/s/', dir: '/srv/../etc' }], maxAgeS: 1 })).toThrow(ValidationError);
    expect(() => staticOptions({ mounts: [{ prefix: '/s/', dir: '/srv/x' }], maxAgeS: -1 })).toThrow('static max-age -1');
  });

  it('reads PIER_STATIC_MAX_AGE, else the runner default, and refuses a malformed one', () => {
    expect(staticMaxAgeS({}, 3_600_000)).toBe(3600);
    expect(staticMaxAgeS({ PIER_STATIC_MAX_AGE: '60' }, 3_600_000)).toBe(60);
    expect(() => checkStaticMaxAge('1h')).toThrow("config var PIER_STATIC_MAX_AGE must be a whole number of seconds 0..31536000, not '1h'");
    expect(() => checkStaticMaxAge('31536001')).toThrow(ValidationError);
    expect(() => checkEnvVar('PIER_STATIC_MAX_AGE', '-5')).toThrow(ValidationError);
    expect(() => checkEnvVar('PIER_STATIC_MAX_AGE', '0')).not.toThrow();
  });
});
