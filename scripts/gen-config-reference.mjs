#!/usr/bin/env node
// Generates docs/configuration.md, the configuration reference, from the two schemas that
// define the configuration, so that the reference cannot drift from what is enforced:
//
//   charts/paxos-operator/values.schema.json   Helm values (checked by helm on install)
//   operator/crd/paxosquorums.yaml             PaxosQuorum spec (checked by the API server)
//
// Usage:
//   node scripts/gen-config-reference.mjs           write docs/configuration.md
//   node scripts/gen-config-reference.mjs --check   exit 1 if docs/configuration.md is stale
//   (npm run manifests runs it too, with the other generated files)
//

/* global console */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const VALUES_SCHEMA = join(REPO, 'charts', 'paxos-operator', 'values.schema.json');
const CRD = join(REPO, 'operator', 'crd', 'paxosquorums.yaml');
export const OUT = join(REPO, 'docs', 'configuration.md');
/** Fields nested deeper than this under spec are left to the Kubernetes API reference. */
const CRD_MAX_DEPTH = 4;

/** Escapes a table cell. */
function cell(text) {
  return String(text ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ').trim();
}

function code(value) {
  if (value === undefined) return '';
  const json = JSON.stringify(value);
  return `\`${json.replace(/`/g, "'")}\``;
}

/** Resolves a local `$ref` (`#/definitions/x`) and merges the referencing node's own keywords over it. */
function deref(root, node) {
  if (!node || typeof node !== 'object' || typeof node.$ref !== 'string') return node;
  const path = node.$ref.replace(/^#\//, '').split('/');
  let target = root;
  for (const part of path) target = target?.[part];
  if (target === undefined) throw new Error(`unresolved $ref ${node.$ref}`);
  const { $ref: _ref, ...own } = node;
  return { ...deref(root, target), ...own };
}

function typeOf(node) {
  if (node.enum) return node.enum.map((v) => code(v)).join(', ');
  if (node.oneOf || node.anyOf) {
    const types = (node.oneOf ?? node.anyOf).map((alt) => alt.type ?? 'object');
    return [...new Set(types)].join(' or ');
  }
  if (node['x-kubernetes-int-or-string']) return 'integer or string';
  if (node.type === 'array') {
    const item = node.items?.type ?? 'object';
    return `array of ${item}`;
  }
  if (node.type === 'object' && node.additionalProperties && typeof node.additionalProperties === 'object') {
    return `map of ${node.additionalProperties.type ?? 'value'}`;
  }
  return node.type ?? 'any';
}

function constraints(node) {
  const out = [];
  if (node.minimum !== undefined) out.push(`≥ ${node.minimum}`);
  if (node.maximum !== undefined) out.push(`≤ ${node.maximum}`);
  if (node.minLength !== undefined && node.minLength > 0) out.push(`length ≥ ${node.minLength}`);
  if (node.maxLength !== undefined) out.push(`length ≤ ${node.maxLength}`);
  if (node.minItems !== undefined) out.push(`items ≥ ${node.minItems}`);
  if (node.maxItems !== undefined) out.push(`items ≤ ${node.maxItems}`);
  if (node.pattern !== undefined) out.push(`pattern \`${node.pattern}\``);
  if (node.format !== undefined) out.push(`format ${node.format}`);
  for (const rule of node['x-kubernetes-validations'] ?? []) out.push(`rule: ${rule.message ?? rule.rule}`);
  return out.join('; ');
}

/** Rows `[key, type, default, constraints, description]` for every leaf and documented object. */
function rows(root, node, prefix, depth, maxDepth, requiredHere = false) {
  node = deref(root, node);
  const out = [];
  const props = node.properties ?? {};
  const hasChildren = Object.keys(props).length > 0 && depth < maxDepth;
  if (prefix !== '') {
    const isLeafish = !hasChildren;
    if (isLeafish || node.description || node['x-kubernetes-validations']) {
      const desc = [node.description ?? '', requiredHere ? '(required)' : '',
        !isLeafish ? '' : Object.keys(props).length > 0 ? 'See the Kubernetes API reference for its fields.' : '']
        .filter(Boolean).join(' ');
      out.push([prefix, typeOf(node), code(node.default), constraints(node), desc]);
    }
  }
  if (!hasChildren) return out;
  const required = new Set(node.required ?? []);
  for (const [key, child] of Object.entries(props)) {
    out.push(...rows(root, child, prefix === '' ? key : `${prefix}.${key}`, depth + 1, maxDepth, required.has(key)));
  }
  if (node.type === 'array' && node.items) {
    out.push(...rows(root, node.items, `${prefix}[]`, depth + 1, maxDepth));
  }
  return out;
}

function table(rowList) {
  const lines = ['| Key | Type | Default | Constraints | Description |', '|---|---|---|---|---|'];
  for (const r of rowList) lines.push(`| \`${r[0]}\` | ${cell(r[1])} | ${cell(r[2])} | ${cell(r[3])} | ${cell(r[4])} |`);
  return lines.join('\n');
}

function valuesSection() {
  const schema = JSON.parse(readFileSync(VALUES_SCHEMA, 'utf8'));
  const list = rows(schema, schema, '', 0, 8).filter(([key]) => key !== 'global');
  return [
    '## Helm chart values',
    '',
    `Generated from \`${relative(REPO, VALUES_SCHEMA)}\`. Helm checks values against this schema on`,
    '`install`, `upgrade`, `template` and `lint`, so a wrong type or an unknown key fails before',
    'anything reaches the cluster. `charts/paxos-operator/values.yaml` has the same defaults with comments.',
    '',
    table(list),
    '',
  ].join('\n');
}

function crdSection() {
  if (!existsSync(CRD)) {
    return [
      '## PaxosQuorum spec',
      '',
      `\`${relative(REPO, CRD)}\` did not exist when this file was generated; run`,
      '`node scripts/gen-config-reference.mjs` again once it does.',
      '',
    ].join('\n');
  }
  const crd = parse(readFileSync(CRD, 'utf8'));
  const { group, names } = crd.spec;
  const version = crd.spec.versions.find((v) => v.storage) ?? crd.spec.versions[0];
  const openapi = version.schema.openAPIV3Schema;
  const spec = openapi.properties?.spec ?? {};
  const list = rows(openapi, spec, 'spec', 1, CRD_MAX_DEPTH);
  const out = [
    '## PaxosQuorum spec',
    '',
    `Generated from \`${relative(REPO, CRD)}\` (\`${group}/${version.name}\`, kind \`${names.kind}\`,`,
    `short names ${(names.shortNames ?? []).map((n) => `\`${n}\``).join(', ') || 'none'}). The API server enforces this`,
    'schema on every create and update; `kubectl explain paxosquorum.spec` shows the same text.',
    '',
    table(list),
    '',
  ];
  const subresources = version.subresources ?? {};
  if (subresources.scale) {
    out.push(
      `The scale subresource maps \`${subresources.scale.specReplicasPath}\` and \`${subresources.scale.statusReplicasPath}\`,`,
      'so `kubectl scale paxosquorum NAME --replicas=N` work.',
      '',
    );
  }
  const columns = version.additionalPrinterColumns ?? [];
  if (columns.length > 0) {
    out.push('### Columns of `kubectl get paxosquorums`', '', '| Column | Type | From | Description |', '|---|---|---|---|');
    for (const c of columns) out.push(`| ${cell(c.name)} | ${cell(c.type)} | \`${cell(c.jsonPath)}\` | ${cell(c.description)} |`);
    out.push('');
  }
  return out.join('\n');
}

export function render() {
  return [
    '<!-- Generated by `node scripts/gen-config-reference.mjs` from values.schema.json and the CRD. Do not edit. -->',
    '# Configuration reference',
    '',
    'Two things are configured: the operator, through the Helm chart\'s values, and each quorum,',
    'through the spec of its PaxosQuorum object.',
    '',
    valuesSection(),
    crdSection(),
  ].join('\n');
}

function main() {
  const text = render();
  if (process.argv.includes('--check')) {
    const current = existsSync(OUT) ? readFileSync(OUT, 'utf8') : '';
    if (current !== text) {
      console.error(`${relative(REPO, OUT)} is out of date: run \`node scripts/gen-config-reference.mjs\`.`);
      process.exit(1);
    }
    console.log(`${relative(REPO, OUT)} is up to date.`);
    return;
  }
  writeFileSync(OUT, text);
  console.log(`wrote ${relative(REPO, OUT)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  }
}
