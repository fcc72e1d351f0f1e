#!/usr/bin/env python3
"""The web API's shape, kept in ``tests/data/api.json`` so that a change to it is noticed.

The snapshot holds the REST API as its OpenAPI schema describes it (``/openapi.json`` of a server
without a token), reduced to what clients rely on: each endpoint's parameters (name, place,
required), request body types, response codes and the fields of each JSON body with their types,
references resolved in place; not the version or how FastAPI renders the schema, which change with
releases of either. OpenAPI does not describe WebSockets: each WebSocket route is listed with its
query parameters.
``tests/test_server.py`` runs this script with ``--check``, which exits 1 naming what differs;
when an API change is meant, run it without ``--check`` and commit the new snapshot with the change:

    python scripts/api_snapshot.py            # write tests/data/api.json
    python scripts/api_snapshot.py --check    # compare, exit 1 on a difference
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_ensemble.server.app import ServerSettings, create_app

SNAPSHOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "api.json"


def api_shape() -> dict:
    """The OpenAPI schema and the WebSocket routes' query parameters of the app with default settings."""
    from fastapi.routing import APIWebSocketRoute

    def routes(items: list) -> list:  # FastAPI keeps an included router's routes on it
        return [found for route in items
                for found in (routes(route.original_router.routes) if hasattr(route, "original_router") else [route])]

    app = create_app(ServerSettings())
    sockets = {route.path: sorted(param.name for param in route.dependant.query_params)
               for route in routes(app.routes) if isinstance(route, APIWebSocketRoute)}
    schema = app.openapi()
    return {"rest": rest_shape(schema), "websockets": sockets}


def rest_shape(schema: dict) -> dict:
    """Each ``METHOD /path`` of an OpenAPI ``schema``: its parameters, request body and responses,
    the JSON bodies as ``field_shape`` gives them."""
    components = schema.get("components", {}).get("schemas", {})
    shape = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {})
            shape[f"{method.upper()} {path}"] = {
                "parameters": sorted(f"{p['in']} {p['name']}{'' if p.get('required') else '?'}"
                                     for p in operation.get("parameters", [])),
                "body": {kind: field_shape(content.get("schema", {}), components) for kind, content in body.items()},
                "responses": {code: field_shape(answer.get("content", {}).get("application/json", {}).get("schema", {}),
                                                components)
                              for code, answer in operation.get("responses", {}).items()},
            }
    return shape


def field_shape(schema: dict, components: dict, depth: int = 0) -> object:
    """A JSON schema as the data it allows: an object's fields (``name?`` when optional) with their
    shapes, a list as ``[item]``, alternatives joined by ``|``, a type by its name, ``any`` when open."""
    if depth > 8:
        return "..."
    if "$ref" in schema:
        return field_shape(components.get(schema["$ref"].rsplit("/", 1)[-1], {}), components, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kinds = [field_shape(s, components, depth + 1) for s in schema[key]]
            return kinds[0] if len(kinds) == 1 else " | ".join(sorted(json.dumps(k, sort_keys=True) for k in kinds))
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", []))
        fields = {f"{name}{'' if name in required else '?'}": field_shape(sub, components, depth + 1)
                  for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            fields["*"] = field_shape(extra, components, depth + 1)
        return fields
    if kind == "array":
        return [field_shape(schema.get("items", {}), components, depth + 1)]
    return kind or "any"


def differences(old: object, new: object, where: str = "") -> list[str]:
    """Where ``new`` differs from ``old`` (JSON values), as JSON paths, at most a few."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = [f"{where}/{key}: {'added' if key not in old else 'removed'}" for key in sorted(set(old) ^ set(new))]
        for key in sorted(set(old) & set(new)):
            found += differences(old[key], new[key], f"{where}/{key}")
        return found
    return [] if old == new else [f"{where}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the snapshot instead of writing it")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="the snapshot file (default %(default)s)")
    args = parser.parse_args()
    shape = json.loads(json.dumps(api_shape()))  # tuples as lists, as the file holds them
    if not args.check:
        args.snapshot.write_text(json.dumps(shape, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.snapshot}")
        return 0
    found = differences(json.loads(args.snapshot.read_text()), shape) if args.snapshot.is_file() else ["no snapshot yet"]
    if found:
        print("the web API changed (if that is meant, run python scripts/api_snapshot.py and commit "
              "tests/data/api.json):\n  " + "\n  ".join(found[:20]), file=sys.stderr)
        return 1
    print("the web API is the snapshot's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
