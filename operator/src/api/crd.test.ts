import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { GROUP, KIND, PLURAL, VERSION } from './types.js';

/** The parts of an OpenAPI schema node the tests look at, under their wire names. */
interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-map-keys'?: string[];
}

interface Version {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: object; scale?: object };
  additionalPrinterColumns?: { name: string }[];
  schema?: { openAPIV3Schema?: Schema };
}

interface Crd {
  metadata?: { name?: string };
  spec: { group: string; scope: string; names: object; versions: Version[] };
}

const crd = parse(readFileSync(new URL('../../crd/paxosquorums.yaml', import.meta.url), 'utf8')) as Crd;
const [version] = crd.spec.versions;
const root = version?.schema?.openAPIV3Schema;

/** The schema node at a dotted path; `[]` steps into array items. */
function at(schema: Schema | undefined, path: string): Schema {
  const found = path.split('.').reduce<Schema | undefined>(
    (node, key) => (key === '[]' ? node?.items : node?.properties?.[key]), schema);
  if (found === undefined) throw new Error(`the schema has no ${path}`);
  return found;
}

describe('PaxosQuorum CRD', () => {
  test('names the resource as the operator addresses it', () => {
    expect(crd.metadata?.name).toBe(`${PLURAL}.${GROUP}`);
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names).toMatchObject({ kind: KIND, plural: PLURAL, shortNames: ['pq'] });
    expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([[VERSION, true, true]]);
  });

  test('has the status and scale subresources', () => {
    expect(version?.subresources?.status).toEqual({});
    expect(version?.subresources?.scale).toEqual({
      specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector',
    });
  });

  test('prints Replicas, Ready, Leader, Epoch, Phase, Age', () => {
    expect(version?.additionalPrinterColumns?.map((c) => c.name)).toEqual(['Replicas', 'Ready', 'Leader', 'Epoch', 'Phase', 'Age']);
  });

  test('bounds and defaults the spec', () => {
    expect(at(root, 'spec.replicas')).toMatchObject({ type: 'integer', minimum: 1, maximum: 15, default: 3 });
    expect(at(root, 'spec.storage.size').default).toBe('1Gi');
    expect(at(root, 'spec.ports.client').default).toBe(7000);
    expect(at(root, 'spec.ports.peer').default).toBe(7001);
    expect(at(root, 'spec.ports.metrics').default).toBe(9090);
    expect(at(root, 'spec.tuning.electionTimeoutMs')).toMatchObject({ minimum: 100, maximum: 60000 });
    expect(at(root, 'spec.reconfiguration.mode')).toMatchObject({ enum: ['Transfer', 'Election'], default: 'Transfer' });
    expect(at(root, 'spec.reconfiguration.stepTimeoutSeconds')).toMatchObject({ minimum: 5, default: 120 });
    for (const passThrough of ['spec.resources', 'spec.pod.affinity', 'spec.pod.tolerations.[]']) {
      expect(at(root, passThrough)['x-kubernetes-preserve-unknown-fields']).toBe(true);
    }
  });

  test('has CEL rules for the replica range and the immutable storage', () => {
    expect(at(root, 'spec')['x-kubernetes-validations']).toEqual([expect.objectContaining({
      rule: '!has(self.replicas) || (self.replicas >= 1 && self.replicas <= 15)', message: expect.stringMatching(/^spec\.replicas must be between 1 and 15/),
    })]);
    expect(at(root, 'spec.storage')['x-kubernetes-validations']).toEqual([{ rule: 'self == oldSelf', message: 'spec.storage is immutable' }]);
  });

  test('keeps every field the planner persists in status.operation', () => {
    const operation = at(root, 'status.operation');
    const recordFields = ['kind', 'from', 'to', 'original', 'target', 'epoch', 'mode', 'finalizeIssued', 'step', 'totalSteps', 'description'];
    expect(Object.keys(operation.properties ?? {})).toEqual(expect.arrayContaining([...recordFields, 'startedAt']));
    expect(at(root, 'status.phase').enum).toEqual(['Pending', 'Available', 'Reconfiguring', 'Degraded', 'Blocked']);
    expect(at(root, 'status.conditions')['x-kubernetes-list-map-keys']).toEqual(['type']);
    expect(Object.keys(at(root, 'status.members.[]').properties ?? {})).toEqual(['name', 'id', 'role', 'epoch', 'healthy', 'lag', 'dataLoss']);
  });
});
