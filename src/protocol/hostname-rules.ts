/**
 * Which hostnames an owner may claim (pure): the rules behind `POST /v1/apps/:app/hostnames` and the control
 * protocol's `host.add`. A name that passes the shape check (HOSTNAME_PATTERN) may still be refused here: an IP
 * literal, a name under the platform's own domain, a local-network name, a single label, or a wildcard over a
 * public suffix. Each refusal names its rule.
 */

/** The rules, in the order they are checked; a refusal message quotes the rule's name. */
export const HOSTNAME_RULES = ['ip-literal', 'platform-domain', 'special-name', 'single-label', 'wildcard-depth', 'public-suffix'] as const;
export type HostnameRule = (typeof HOSTNAME_RULES)[number];

export interface HostnameRefusal {
  rule: HostnameRule;
  /** One line: the name, the rule, why, and what to do instead. */
  message: string;
}

export interface HostnameContext {
  /** The app claiming the name. */
  app: string;
  /** The platform's app domains (every app has `<app>.<domain>` and `stage.<app>.<domain>`). */
  domains: readonly string[];
}

/**
 * Top-level names of the local machine or network (RFC 6761 `localhost`, mDNS `local`, RFC 8375 `home.arpa`,
 * ICANN's `internal`, and names that collide on private networks): routing one to an app would hand it traffic
 * meant for the machine or the network, such as a cloud metadata name under `.internal`.
 */
const SPECIAL_TLDS = new Set(['localhost', 'localdomain', 'local', 'internal', 'intranet', 'lan', 'home', 'corp', 'private', 'arpa']);

/**
 * A compact list of multi-label public suffixes (from the Public Suffix List, https://publicsuffix.org): the
 * common country second levels and the shared hosting domains where every customer is a subdomain. Single-label
 * suffixes (`com`, `uk`) need no list: a wildcard needs two labels after `*.`. Not the whole list, on purpose
 * (no dependency, no update job); a wildcard over a suffix missing here still only routes names whose DNS points
 * at this platform.
 */
const PUBLIC_SUFFIXES = new Set([
  // country second levels
  'co.uk', 'org.uk', 'me.uk', 'ltd.uk', 'plc.uk', 'net.uk', 'ac.uk', 'gov.uk', 'sch.uk', 'nhs.uk', 'police.uk',
  'com.au', 'net.au', 'org.au', 'edu.au', 'gov.au', 'asn.au', 'id.au',
  'co.nz', 'net.nz', 'org.nz', 'ac.nz', 'govt.nz', 'geek.nz', 'school.nz',
  'co.jp', 'ne.jp', 'or.jp', 'ac.jp', 'go.jp', 'gr.jp', 'ad.jp', 'ed.jp', 'lg.jp',
  'co.kr', 'ne.kr', 'or.kr', 're.kr', 'go.kr', 'ac.kr',
  'com.cn', 'net.cn', 'org.cn', 'gov.cn', 'edu.cn', 'com.hk', 'net.hk', 'org.hk', 'com.tw', 'net.tw', 'org.tw',
  'com.sg', 'net.sg', 'org.sg', 'edu.sg', 'com.my', 'net.my', 'org.my', 'co.th', 'in.th', 'or.th', 'ac.th',
  'co.id', 'or.id', 'web.id', 'ac.id', 'com.ph', 'net.ph', 'org.ph', 'com.vn', 'net.vn', 'com.pk', 'com.bd',
  'co.in', 'net.in', 'org.in', 'firm.in', 'gen.in', 'ind.in', 'ac.in', 'gov.in',
  'co.il', 'org.il', 'net.il', 'ac.il', 'com.tr', 'net.tr', 'org.tr', 'com.sa', 'com.eg', 'co.ae',
  'co.za', 'org.za', 'net.za', 'web.za', 'gov.za', 'ac.za', 'co.ke', 'or.ke', 'co.tz', 'co.ug', 'com.ng', 'com.gh',
  'com.br', 'net.br', 'org.br', 'gov.br', 'edu.br', 'com.ar', 'net.ar', 'org.ar', 'com.mx', 'net.mx', 'org.mx',
  'com.co', 'net.co', 'org.co', 'com.pe', 'com.ve', 'com.ec', 'com.uy', 'com.py', 'com.bo', 'co.cr', 'cl.cl',
  'com.pl', 'net.pl', 'org.pl', 'co.at', 'or.at', 'com.es', 'org.es', 'com.pt', 'com.gr', 'com.cy', 'com.mt',
  'com.ua', 'org.ua', 'net.ua', 'com.ru', 'net.ru', 'org.ru', 'co.rs', 'com.ro', 'co.hu', 'com.hr', 'co.no',
  // shared hosting: every customer lives under these
  'github.io', 'githubusercontent.com', 'gitlab.io', 'bitbucket.io', 'herokuapp.com', 'herokussl.com',
  'netlify.app', 'vercel.app', 'now.sh', 'pages.dev', 'workers.dev', 'web.app', 'firebaseapp.com', 'appspot.com',
  'blogspot.com', 'cloudfront.net', 'amazonaws.com', 's3.amazonaws.com', 'elasticbeanstalk.com', 'awsapprunner.com',
  'azurewebsites.net', 'cloudapp.net', 'azurestaticapps.net', 'azureedge.net', 'trafficmanager.net',
  'fly.dev', 'onrender.com', 'railway.app', 'up.railway.app', 'glitch.me', 'repl.co', 'replit.app', 'deno.dev',
  'ngrok.io', 'ngrok.app', 'ngrok-free.app', 'loca.lt', 'surge.sh', 'readthedocs.io', 'pythonanywhere.com',
  'duckdns.org', 'dyndns.org', 'no-ip.org', 'ddns.net', 'eu.org', 'myshopify.com', 'wixsite.com', 'squarespace.com',
  'digitaloceanspaces.com', 'ondigitalocean.app', 'cloudflareaccess.com', 'trycloudflare.com', 'codeberg.page',
  'sourceforge.io', 'js.org', 'neocities.org', 'translate.goog', 'run.app', 'a.run.app',
]);

/** A label WHATWG's URL parser reads as a number (so the whole name as an IPv4 address): `1`, `0x7f`, `0x`. */
const NUMERIC_LABEL = /^(0x[0-9a-f]*|[0-9]+)$/i;

/** Why `hostname` (lower-case, already of HOSTNAME_PATTERN's shape) may not be claimed by `ctx.app`; undefined when it may. */
export function hostnameRefusal(hostname: string, ctx: HostnameContext): HostnameRefusal | undefined {
  const name = hostname.toLowerCase();
  const isWildcard = name.startsWith('*.');
  const base = isWildcard ? name.slice(2) : name;
  const labels = base.split('.');
  const refuse = (rule: HostnameRule, why: string): HostnameRefusal => ({ rule, message: `hostname '${hostname}' is refused (rule ${rule}): ${why}` });

  if (name.includes(':') || name.includes('[') || NUMERIC_LABEL.test(labels.at(-1) ?? '')) {
    return refuse('ip-literal', 'IP addresses (and names ending in a number, like 127.1 or 0x7f.1) are not hostnames; attach a DNS name that points at the balancer');
  }
  for (const raw of ctx.domains) {
    const domain = raw.toLowerCase().replace(/\.$/, '');
    const own = [`${ctx.app}.${domain}`, `stage.${ctx.app}.${domain}`];
    if (!isWildcard && own.includes(name)) {
      return refuse('platform-domain', `app '${ctx.app}' already answers at ${own[0]} and ${own[1]}; there is nothing to add`);
    }
    // Under the platform's domain, or a wildcard that would also cover it (`*.example.com` over `apps.example.com`).
    if (base === domain || base.endsWith(`.${domain}`) || (isWildcard && domain.endsWith(`.${base}`))) {
      return refuse('platform-domain', `names under '${domain}' belong to the platform (every app gets <app>.${domain}); attach a name under your own domain`);
    }
  }
  if (SPECIAL_TLDS.has(labels.at(-1)!)) {
    return refuse('special-name', `.${labels.at(-1)} names (localhost, .local, .internal, .lan, .arpa and the like) reach this machine or its local network; attach a public DNS name`);
  }
  if (labels.length < 2 && !isWildcard) {
    return refuse('single-label', "a name without a dot only resolves on a local network; attach a full DNS name such as 'www.example.com'");
  }
  if (isWildcard && labels.length < 2) {
    return refuse('wildcard-depth', `a wildcard needs at least two labels after '*.', like '*.example.${base}'; '*.${base}' would take every name under a top-level domain`);
  }
  if (PUBLIC_SUFFIXES.has(base)) {
    return refuse('public-suffix', `'${base}' is a public suffix shared by many unrelated owners; attach a name under your own domain, like '${isWildcard ? '*.' : 'www.'}example.${base}'`);
  }
  return undefined;
}
