#!/usr/bin/env python3
"""Validate Kubernetes manifests offline, as an API server would.

Usage: validate_manifests.py [--crd CRD.yaml]... FILE...

Every document of every FILE is checked:
  - a kind one of the --crd files defines: against that CRD's
    openAPIV3Schema for the document's version, strictly (a field the schema
    does not name is an error, as `kubectl apply --validate=strict` makes
    it), its x-kubernetes-validations rules evaluated with cel-python, and
    its metadata as Kubernetes' ObjectMeta;
  - any other kind: with kubernetes-validate, strictly, against Kubernetes'
    own schemas; a kind it has no schema for is an error, not a warning.

Prints one line per document, `ok Kind/name` or `FAIL Kind/name: why`, and
exits 1 when any fails (2 on unusable input). Run it with the venv that
hack/setup-host.sh --test-tools makes (hack/test-tools.txt).
"""

import argparse
import copy
import sys

import celpy
import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """The schema with unknown fields refused wherever it names fields."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if isinstance(s, dict):
            if (
                "properties" in s
                and "additionalProperties" not in s
                and not s.get("x-kubernetes-preserve-unknown-fields")
            ):
                s["additionalProperties"] = False
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)

    walk(schema)
    return schema


def cel_failures(schema, value, path, env):
    """Messages of the x-kubernetes-validations rules `value` breaks."""
    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            program = env.program(env.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
            ok = result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result))
        except Exception as e:  # an evaluation error fails the rule
            ok, rule = False, dict(rule, message="%s (%s)" % (rule.get("message", ""), e))
        if not ok:
            out.append("%s: %s" % (path or "<root>", rule.get("message", rule["rule"])))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                out += cel_failures(sub, v, "%s.%s" % (path, k) if path else k, env)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out += cel_failures(schema["items"], v, "%s[%d]" % (path, i), env)
    return out


def load_crds(paths):
    """(group, version, kind) -> openAPIV3Schema."""
    crds = {}
    for p in paths:
        with open(p) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    if v.get("served", True):
                        key = (spec["group"], v["name"], spec["names"]["kind"])
                        crds[key] = v["schema"]["openAPIV3Schema"]
    return crds


def check_crd_kind(doc, schema, env):
    problems = []
    validator = jsonschema.Draft7Validator(strict(schema))
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        problems.append("%s: %s" % (".".join(str(p) for p in e.path) or "<root>", e.message))
    problems += cel_failures(schema, doc, "", env)
    # The API server checks metadata as ObjectMeta whatever the kind.
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
    try:
        kubernetes_validate.validate(meta, kubernetes_validate.utils.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as e:
        problems.append("metadata: %s" % e.message)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crd", action="append", default=[], help="a CustomResourceDefinition file")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    crds = load_crds(args.crd)
    env = celpy.Environment()
    version = kubernetes_validate.utils.latest_version()
    failed = 0
    seen = 0
    for path in args.files:
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as e:
            print("FAIL %s: %s" % (path, e))
            return 2
        for doc in docs:
            seen += 1
            name = "%s/%s" % (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
            group, _, ver = doc.get("apiVersion", "").rpartition("/")
            schema = crds.get((group, ver, doc.get("kind")))
            if schema is not None:
                problems = check_crd_kind(doc, schema, env)
                how = "against its CRD"
            else:
                how = "against Kubernetes %s" % version
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    problems = []
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "<root>"
                    problems = ["%s: %s" % (where, e.message)]
                except kubernetes_validate.SchemaNotFoundError as e:
                    problems = [e.message]
            if problems:
                failed += 1
                print("FAIL %s %s (%s): %s" % (name, how, path, "; ".join(problems)))
            else:
                print("ok %s %s (%s)" % (name, how, path))
    if seen == 0:
        print("FAIL: no document in %s" % ", ".join(args.files))
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
