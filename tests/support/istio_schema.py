"""Validates Istio manifests against Istio's own schema.

The models come from `cloudcoil-models-istio` (PyPI), generated from Istio's CRDs. They
accept unknown fields silently, so each document is also dumped back from its model and
compared with what was written: a field the schema does not know (a typo) is missing from
the dump and is reported. `pluginConfig` is free-form in Istio's schema (the filter's own
parser checks it in the Rust tests).

    python3 tests/support/istio_schema.py FILE.yaml...     # exit 1 on any error
"""

import sys

import yaml
from cloudcoil.models.istio.extensions import v1alpha1 as extensions
from cloudcoil.models.istio.networking import v1 as networking
from cloudcoil.models.istio.networking import v1alpha3 as networking_v1alpha3

MODELS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): extensions.WasmPlugin,
    ("networking.istio.io/v1", "ServiceEntry"): networking.ServiceEntry,
    ("networking.istio.io/v1", "DestinationRule"): networking.DestinationRule,
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): networking_v1alpha3.EnvoyFilter,
}

# Free-form by Istio's schema: compared as written, never walked.
OPAQUE = {"pluginConfig", "labels", "annotations", "matchLabels", "value"}


def unknown_fields(written, dumped, path=""):
    """The paths in `written` that `dumped` (the model's view) does not have."""
    missing = []
    if isinstance(written, dict):
        if not isinstance(dumped, dict):
            return [path or "(root)"]
        for key, value in written.items():
            here = f"{path}.{key}" if path else key
            if key not in dumped:
                missing.append(here)
            elif key not in OPAQUE:
                missing.extend(unknown_fields(value, dumped[key], here))
    elif isinstance(written, list):
        if not isinstance(dumped, list) or len(dumped) != len(written):
            return [path]
        for i, (w, d) in enumerate(zip(written, dumped)):
            missing.extend(unknown_fields(w, d, f"{path}[{i}]"))
    return missing


def check(path):
    errors = []
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        model = MODELS.get(key)
        if model is None:
            errors.append(f"{path}: no Istio schema for {key}")
            continue
        try:
            parsed = model.model_validate(doc)
        except Exception as e:  # pydantic's ValidationError names each field
            errors.append(f"{path}: {key[1]}: {e}")
            continue
        dumped = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
        for field in unknown_fields(doc, dumped):
            errors.append(f"{path}: {key[1]}: unknown field `{field}`")
    return errors


def main(paths):
    errors = [e for p in paths for e in check(p)]
    for e in errors:
        print(e)
    if not errors:
        print(f"{len(paths)} manifest(s) valid against Istio's schema")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
