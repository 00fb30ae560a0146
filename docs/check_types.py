"""Checks JSON instances of the admin API's Rust types (crates/api) against
docs/admin-api.yaml: each instance must validate against the schema its
pointer names (JSON Schema 2020-12, as OpenAPI 3.1 uses), and every object
in it must have exactly the properties the schema documents, so a field
added, renamed or dropped on either side fails.

Reads [{"pointer": "/paths/...", "instance": ...}, ...] on stdin; prints
one line per problem and exits 1 if there is any. Run by
tests/all/docs.rs with docs/.venv's Python (scripts/setup makes it)."""

import json
import sys

import jsonschema
import referencing
import referencing.jsonschema
import yaml

DOCUMENT = "urn:ferry:admin-api"


def resolve(document, schema):
    while "$ref" in schema:
        pointer = schema["$ref"].removeprefix("#")
        schema = follow(document, pointer)
    return schema


def follow(document, pointer):
    node = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def properties(document, schema):
    """The properties an object schema documents, `allOf` merged."""
    schema = resolve(document, schema)
    found = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        found.update(properties(document, part))
    return found


def compare(document, schema, instance, where, problems):
    schema = resolve(document, schema)
    if isinstance(instance, dict):
        documented = properties(document, schema)
        extra = schema.get("additionalProperties")
        if documented or not isinstance(extra, dict):
            for key in sorted(set(instance) - set(documented)):
                problems.append(f"{where}: `{key}` is not in the document")
            for key in sorted(set(documented) - set(instance)):
                problems.append(f"{where}: the document's `{key}` is not in the type")
            for key in set(instance) & set(documented):
                compare(document, documented[key], instance[key], f"{where}.{key}", problems)
        else:
            for key, value in instance.items():
                compare(document, extra, value, f"{where}.{key}", problems)
    elif isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            compare(document, schema["items"], item, f"{where}[{i}]", problems)


def main():
    with open(sys.argv[1]) as f:
        document = yaml.safe_load(f)
    registry = referencing.Registry().with_resource(
        DOCUMENT,
        referencing.Resource.from_contents(
            document, default_specification=referencing.jsonschema.DRAFT202012
        ),
    )
    problems = []
    for case in json.load(sys.stdin):
        pointer, instance = case["pointer"], case["instance"]
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{DOCUMENT}#{pointer}"}, registry=registry
        )
        for error in validator.iter_errors(instance):
            problems.append(f"{pointer}: {error.message}")
        compare(document, follow(document, pointer), instance, pointer, problems)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


main()
