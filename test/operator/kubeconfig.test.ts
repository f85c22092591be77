/**
 * Kubeconfigs whose credentials come from an exec plugin (as EKS, GKE and kubelogin's OIDC
 * write them), against a real kube-apiserver that accepts static bearer tokens: the operator's
 * REST client gets its token through @kubernetes/client-node's KubeConfig, runs the plugin once
 * for many requests, asks it again after a 401, and reports a failing plugin clearly.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { LocalControlPlane } from '../k8s/cluster/control-plane.js';
import { requireTools } from '../k8s/cluster/tools.js';
import { loadKubeConfig, makeClients } from '../../operator/src/k8s/client.js';
import { KubeApiError } from '../../operator/src/k8s/errors.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';

const GOOD = 'exec-plugin-token-0123456789';

describe('kubeconfig with an exec credential plugin', () => {
  let cp: LocalControlPlane | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'paxos-kubeconfig-'));

  beforeAll(async () => {
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl']);
    const tokens = join(dir, 'tokens.csv');
    writeFileSync(tokens, `${GOOD},exec-user,exec-uid,"system:masters"\n`);
    cp = new LocalControlPlane();
    await cp.start({ apiserverArgs: [`--token-auth-file=${tokens}`] });
  }, 180_000);

  afterAll(async () => {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /**
   * A kubeconfig for the control plane whose user is an exec plugin: a shell script that counts
   * its runs and prints an ExecCredential with the token named in `tokenFile`, or fails.
   */
  function execKubeconfig(name: string): { path: string; runs: () => number; tokenFile: string } {
    const admin = loadKubeConfig((cp as LocalControlPlane).kubeconfigPath);
    const tokenFile = join(dir, `${name}.token`);
    const runsFile = join(dir, `${name}.runs`);
    const plugin = join(dir, `${name}.sh`);
    writeFileSync(runsFile, '');
    writeFileSync(plugin, [
      '#!/bin/sh',
      `echo run >> '${runsFile}'`,
      `if [ ! -s '${tokenFile}' ]; then echo 'plugin: not logged in' >&2; exit 1; fi`,
      `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat '${tokenFile}')"`,
      // A token to hand out from the next run on (as after a re-login).
      `if [ -f '${tokenFile}.next' ]; then mv '${tokenFile}.next' '${tokenFile}'; fi`,
      '',
    ].join('\n'));
    chmodSync(plugin, 0o755);
    const path = join(dir, `${name}.kubeconfig`);
    writeFileSync(path, stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'exec',
      clusters: [{ name: 'local', cluster: { server: admin.server.href.replace(/\/$/, ''), 'certificate-authority-data': admin.ca?.toString('base64') } }],
      users: [{ name: 'plugin-user', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, interactiveMode: 'Never' } } }],
      contexts: [{ name: 'exec', context: { cluster: 'local', user: 'plugin-user', namespace: 'default' } }],
    }));
    const runs = (): number => readFileSync(runsFile, 'utf8').split('\n').filter((line) => line !== '').length;
    return { path, runs, tokenFile };
  }

  it('authenticates with the plugin\'s token, runs the plugin once for many requests, and again after a 401', async () => {
    const { path, runs, tokenFile } = execKubeconfig('good');
    writeFileSync(tokenFile, GOOD);
    const clients = makeClients(loadKubeConfig(path));
    try {
      const namespaces = await clients.rest.get<{ items: { metadata: { name: string } }[] }>('/api/v1/namespaces');
      expect(namespaces.items.map((ns) => ns.metadata.name)).toContain('default');
      await Promise.all(Array.from({ length: 10 }, () => clients.rest.get(resourcePath(Resources.configMaps, 'default'))));
      expect(runs()).toBe(1);

    } finally {
      clients.rest.close();
    }

    // A token the API server refuses (revoked, expired early): the 401 makes the client ask the
    // plugin again, and the request succeeds with the new token.
    const second = execKubeconfig('refresh');
    writeFileSync(second.tokenFile, 'revoked-token');
    writeFileSync(`${second.tokenFile}.next`, GOOD);
    const refreshed = makeClients(loadKubeConfig(second.path));
    try {
      await expect(refreshed.rest.get('/api/v1/namespaces')).resolves.toMatchObject({ kind: 'NamespaceList' });
      expect(second.runs()).toBe(2);
    } finally {
      refreshed.rest.close();
    }

    // A plugin that keeps handing out a refused token: asked again once, then the 401 is reported.
    const third = execKubeconfig('refused');
    writeFileSync(third.tokenFile, 'revoked-token');
    const refused = makeClients(loadKubeConfig(third.path));
    try {
      await expect(refused.rest.get('/api/v1/namespaces')).rejects.toMatchObject({ status: 401 });
      expect(third.runs()).toBe(2);
    } finally {
      refused.rest.close();
    }
  }, 60_000);

  it('reports a failing plugin as a clear error naming the kubeconfig and the plugin\'s message', async () => {
    const { path } = execKubeconfig('failing');
    const clients = makeClients(loadKubeConfig(path));
    try {
      const error = await clients.rest.get('/api/v1/namespaces').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KubeApiError);
      expect((error as KubeApiError).message).toMatch(/credential plugin of context exec failed: plugin: not logged in/);
    } finally {
      clients.rest.close();
    }
  }, 30_000);
});
