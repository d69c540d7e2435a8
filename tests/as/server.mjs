// The authorization server the integration tests put behind dcr-server (issue 27): a
// node-oidc-provider (the exact version is pinned in package-lock.json; install it with
// `npm ci --prefix tests/as`) on HTTPS, configured so that every DCR version's sandbox
// registration, mapped to RFC 7591 names, is accepted.
//
// Run: node tests/as/server.mjs, with (every one required):
//   AS_PORT                          port on 127.0.0.1
//   AS_ISSUER                        issuer, e.g. https://127.0.0.1:PORT
//   AS_TLS_CERT, AS_TLS_KEY          PEM files of the server certificate (naming 127.0.0.1) and key
//   AS_CLIENT_CA                     PEM file: trust anchors for client (transport) certificates
//   AS_INITIAL_ACCESS_TOKEN          the Bearer token RFC 7591 POSTs must carry
//   AS_INTROSPECTION_CLIENT_ID,
//   AS_INTROSPECTION_CLIENT_SECRET   the pre-configured client (client_secret_basic) that may introspect
// Optional, for the failure cases:
//   AS_REFUSE_SOFTWARE_ID            refuse registrations of this software_id (400 invalid_client_metadata)
//   AS_CLIENT_ID_LENGTH              give client_ids of this many characters (default: a 36-character UUID)
//   AS_FAIL_DELETES                  answer the first N RFC 7592 DELETEs 503 (default 0)
// and, for fetching a TPP's JWKS from a loopback HTTPS server with a test CA, Node's own
// NODE_EXTRA_CA_CERTS (a PEM file, read by Node at start).
//
// `GET /test/live-clients` answers the ids of the clients registered by RFC 7591 and not yet
// deleted (JSON array): how the tests see that nothing is left behind at the AS.
//
// It prints one line "listening <issuer>" once it accepts connections, and exits 0 on SIGTERM
// or SIGINT. Its state (clients, tokens) lives in memory and dies with it.

import { generateKeyPairSync, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider, { errors } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`tests/as/server.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('AS_PORT'));
const issuer = required('AS_ISSUER').replace(/\/$/, '');
const tlsCert = readFileSync(required('AS_TLS_CERT'));
const tlsKey = readFileSync(required('AS_TLS_KEY'));
const clientCa = readFileSync(required('AS_CLIENT_CA'));
const initialAccessToken = required('AS_INITIAL_ACCESS_TOKEN');
const introspectionClientId = required('AS_INTROSPECTION_CLIENT_ID');
const introspectionClientSecret = required('AS_INTROSPECTION_CLIENT_SECRET');
const refusedSoftwareId = process.env.AS_REFUSE_SOFTWARE_ID;
const clientIdLength = Number(process.env.AS_CLIENT_ID_LENGTH || 0);
let failDeletes = Number(process.env.AS_FAIL_DELETES || 0);

function newClientId() {
  if (!clientIdLength) return randomUUID();
  return randomBytes(clientIdLength).toString('base64url').slice(0, clientIdLength);
}

// Signing keys for this run: RSA for RS256/PS256, P-256 for ES256 (every alg the OB sandbox uses).
function privateJwk(type, options, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}
const jwks = {
  keys: [
    privateJwk('rsa', { modulusLength: 2048 }, 'as-rsa'),
    privateJwk('ec', { namedCurve: 'P-256' }, 'as-ec'),
  ],
};

// The client certificate of this request's TLS connection, when it presented one.
function peerCertificate(ctx) {
  const cert = ctx.socket.getPeerCertificate?.();
  return cert?.raw ? new X509Certificate(cert.raw) : undefined;
}

// A DN as a set of `type=value` pairs, in any order: OB subject DNs are written
// `CN=…,OU=…,O=…,C=GB`, while Node lists a certificate's subject from `C=` down.
function dnPairs(dn, separator) {
  return new Set(dn.split(separator).map((rdn) => rdn.trim()).filter(Boolean).map((rdn) => {
    const eq = rdn.indexOf('=');
    return `${rdn.slice(0, eq).trim().toUpperCase()}=${rdn.slice(eq + 1).trim()}`;
  }));
}

function sameDn(certSubject, expected) {
  const a = dnPairs(certSubject, '\n');
  const b = dnPairs(expected, ',');
  return a.size === b.size && [...a].every((pair) => b.has(pair));
}

function isLoopback(url) {
  const { hostname } = new URL(url);
  return ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(hostname);
}

const provider = new Provider(issuer, {
  jwks,
  cookies: { keys: [randomUUID()] },
  scopes: ['openid', 'offline_access', 'accounts', 'payments', 'fundsconfirmations'],
  responseTypes: ['code id_token', 'code', 'id_token', 'none'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    idTokenSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    requestObjectSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    userinfoSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    introspectionSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    authorizationSigningAlgValues: ['PS256', 'ES256', 'RS256'],
  },
  // OB metadata that RFC 7591 does not name, kept with the client (it drops unknown fields).
  extraClientMetadata: {
    properties: ['software_id'],
    validator(ctx, key, value) {
      if (key === 'software_id' && refusedSoftwareId && value === refusedSoftwareId) {
        throw new errors.InvalidClientMetadata(`software_id ${value} is not welcome here`);
      }
    },
  },
  clients: [{
    client_id: introspectionClientId,
    client_secret: introspectionClientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  }],
  // A TPP's JWKS is served on loopback in the tests; the provider refuses special-use
  // addresses by default (its SSRF guard, a dispatcher it passes in), so loopback goes without it.
  fetch(url, options) {
    if (isLoopback(url)) {
      // eslint-disable-next-line no-param-reassign
      delete options.dispatcher;
    }
    return globalThis.fetch(url, options);
  },
  discovery: {
    // One listener asks every connection for a certificate, so the aliases are the endpoints.
    mtls_endpoint_aliases: {
      token_endpoint: `${issuer}/token`,
      introspection_endpoint: `${issuer}/token/introspection`,
      revocation_endpoint: `${issuer}/token/revocation`,
      userinfo_endpoint: `${issuer}/me`,
      backchannel_authentication_endpoint: `${issuer}/backchannel`,
    },
  },
  features: {
    devInteractions: { enabled: false },
    registration: {
      enabled: true,
      initialAccessToken,
      // Its own ids are 43 characters; dcr-server takes at most 36 of [A-Za-z0-9._~-].
      idFactory: newClientId,
    },
    registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    // Without it the provider drops request_object_signing_alg from a registration.
    requestObjects: { enabled: true, requireSignedRequestObject: false },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      getCertificate(ctx) {
        return peerCertificate(ctx)?.toString();
      },
      certificateAuthorized(ctx) {
        return ctx.socket.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        const cert = peerCertificate(ctx);
        return property === 'tls_client_auth_subject_dn' && cert !== undefined
          && sameDn(cert.subject, expected);
      },
    },
    ciba: {
      enabled: true,
      deliveryModes: ['poll', 'ping'],
      // No authentication device here: registration is what the tests need.
      processLoginHint: async (ctx, loginHint) => loginHint,
      processLoginHintToken: async () => {
        throw new errors.InvalidRequest('login_hint_token is not supported by the test AS');
      },
      validateRequestContext: async () => {},
      verifyUserCode: async () => {},
      triggerAuthenticationDevice: async () => {},
    },
  },
});

// RFC 7523 assertions are not exchanged here; clients only need to be able to register the grant.
provider.registerGrantType(
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  async () => {
    throw new errors.UnsupportedGrantType('the test AS registers jwt-bearer clients but does not exchange assertions');
  },
  ['assertion', 'scope'],
);

// The clients registered by RFC 7591 and not deleted since.
const live = new Set();
provider.on('registration_create.success', (ctx, client) => live.add(client.clientId));
provider.on('registration_delete.success', (ctx, client) => live.delete(client.clientId));
const callback = provider.callback();

const server = createServer({
  cert: tlsCert,
  key: tlsKey,
  ca: clientCa,
  // Ask for a certificate everywhere but admit connections without one: the provider decides
  // per endpoint (tls_client_auth, certificate-bound tokens), as behind mtls_endpoint_aliases.
  requestCert: true,
  rejectUnauthorized: false,
}, (req, res) => {
  if (req.method === 'GET' && req.url === '/test/live-clients') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify([...live]));
    return;
  }
  if (req.method === 'DELETE' && failDeletes > 0) {
    failDeletes -= 1;
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'temporarily_unavailable' }));
    return;
  }
  callback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
