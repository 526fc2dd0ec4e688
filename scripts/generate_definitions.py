#!/usr/bin/env python3
"""Generate the compact FHIR R4 (4.0.1) definition data under resources/definitions/data/.

Inputs are the official HL7 definition files (see /work/shared/fhir-r4/README.md):

- StructureDefinitions of the datatypes and resources
  (https://hl7.org/fhir/R4/structuredefinition.html, snapshot form, https://hl7.org/fhir/R4/elementdefinition.html);
- ValueSets and CodeSystems, expanded here for required bindings
  (https://hl7.org/fhir/R4/valueset.html#compositions, https://hl7.org/fhir/R4/terminologies.html#required);
- SearchParameters (https://hl7.org/fhir/R4/searchparameter.html);
- CompartmentDefinitions (https://hl7.org/fhir/R4/compartmentdefinition.html).

The server never reads the HL7 files at run time: only the output of this script, which is committed.
The output is deterministic (sorted keys, fixed gzip header), so re-running it yields identical bytes
and a diff in review means the inputs or this script changed.

Usage: python scripts/generate_definitions.py [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "fhir-r4"
DEFAULT_OUT = REPO_ROOT / "resources" / "definitions" / "data"

REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
FHIRPATH_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."

# Bumped whenever the layout of the generated files changes, so the loader can refuse stale data.
FORMAT_VERSION = 1


class Unexpandable(Exception):
    """A value set that cannot be enumerated from the local files (filters, external code systems)."""


def load_bundle(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [entry["resource"] for entry in json.load(fh).get("entry", [])]


def strip_version(canonical: str) -> str:
    # Canonical references may pin a version (`...|4.0.1`); every file here is 4.0.1.
    return canonical.split("|", 1)[0]


# ---------------------------------------------------------------------------------------------
# Terminology


class Terminology:
    def __init__(self, resources: list[dict]):
        self.value_sets = {r["url"]: r for r in resources if r["resourceType"] == "ValueSet"}
        self.code_systems = {r["url"]: r for r in resources if r["resourceType"] == "CodeSystem"}
        self._memo: dict[str, frozenset[str] | None] = {}

    def system_codes(self, system: str) -> set[str]:
        cs = self.code_systems.get(system)
        # Only a complete CodeSystem enumerates its codes; `fragment`, `example`, `not-present` do not,
        # and external systems (UCUM, BCP-13 mime types, BCP-47 languages, SNOMED...) are absent.
        if cs is None or cs.get("content") != "complete":
            raise Unexpandable(system)
        codes: set[str] = set()
        stack = list(cs.get("concept", []))
        while stack:
            concept = stack.pop()
            codes.add(concept["code"])
            stack.extend(concept.get("concept", []))
        return codes

    def _include_codes(self, inc: dict, seen: tuple[str, ...]) -> set[str]:
        if inc.get("filter"):
            raise Unexpandable("filter")
        parts: list[set[str]] = []
        if "system" in inc:
            if inc.get("concept"):
                parts.append({c["code"] for c in inc["concept"]})
            else:
                parts.append(self.system_codes(inc["system"]))
        for vs_url in inc.get("valueSet", []):
            codes = self._expand(strip_version(vs_url), seen)
            if codes is None:
                raise Unexpandable(vs_url)
            parts.append(set(codes))
        if not parts:
            raise Unexpandable("empty include")
        # Within one include, system and valueSet constrain each other (intersection).
        result = parts[0]
        for part in parts[1:]:
            result &= part
        return result

    def _expand(self, url: str, seen: tuple[str, ...]) -> frozenset[str] | None:
        if url in self._memo:
            return self._memo[url]
        if url in seen:
            raise Unexpandable(f"cycle at {url}")
        vs = self.value_sets.get(url)
        result: frozenset[str] | None
        try:
            if vs is None:
                raise Unexpandable(url)
            compose = vs.get("compose")
            if compose is None:
                raise Unexpandable(f"{url} has no compose")
            codes: set[str] = set()
            for inc in compose.get("include", []):
                codes |= self._include_codes(inc, seen + (url,))
            for exc in compose.get("exclude", []):
                codes -= self._include_codes(exc, seen + (url,))
            result = frozenset(codes)
        except Unexpandable:
            result = None
        self._memo[url] = result
        return result

    def expand(self, url: str) -> frozenset[str] | None:
        """All codes of a value set (system-agnostic, as plain `code` elements carry no system)."""
        return self._expand(strip_version(url), ())


# ---------------------------------------------------------------------------------------------
# Structures


def type_code(t: dict) -> str:
    code = t["code"]
    if code.startswith(FHIRPATH_SYSTEM_PREFIX):
        # Element.id, Extension.url and primitive `value`s are typed with FHIRPath system types;
        # the fhir-type extension tells which FHIR primitive they are.
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        raise ValueError(f"no fhir-type for {code}")
    return code


def primitive_info(sd: dict, by_name: dict[str, dict]) -> dict:
    value_el = next(e for e in sd["snapshot"]["element"] if e["path"] == f"{sd['type']}.value")
    regex = None
    for t in value_el.get("type", []):
        for ext in t.get("extension", []):
            if ext["url"] == REGEX_EXT:
                regex = ext["valueString"]
    # The JSON representation follows the root primitive (positiveInt -> integer is a JSON number,
    # code -> string is a JSON string): https://hl7.org/fhir/R4/json.html#primitive
    root = sd
    while True:
        parent = by_name.get(root["baseDefinition"].rsplit("/", 1)[-1])
        if parent is None or parent.get("kind") != "primitive-type":
            break
        root = parent
    json_kind = {"boolean": "boolean", "integer": "integer", "decimal": "decimal"}.get(root["type"], "string")
    return {"regex": regex, "json": json_kind}


def structure_entries(sd: dict, terminology: Terminology, bindings: dict) -> dict[str, dict]:
    """One entry per structure (the type itself plus each backbone element), listing its elements."""
    elements = sd["snapshot"]["element"]
    paths = [e["path"] for e in elements]
    if len(paths) != len(set(paths)):
        raise ValueError(f"{sd['url']}: duplicate element paths (slices) in snapshot")
    has_children = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    out: dict[str, dict] = {}
    root = sd["type"]
    if sd["kind"] == "resource":
        kind = "resource"
    else:
        kind = sd["kind"]
    out[root] = {"kind": kind, "elements": []}
    if kind == "resource":
        # Resource or DomainResource: decides which common search parameters apply (`_text`).
        out[root]["base"] = sd.get("baseDefinition", "").rsplit("/", 1)[-1]
    for el in elements[1:]:
        path = el["path"]
        parent, name = path.rsplit(".", 1)
        if path in has_children:
            types = [path]
            out[path] = {"kind": "backbone", "elements": []}
        elif "contentReference" in el:
            types = [el["contentReference"].lstrip("#").split("#")[-1]]
        else:
            types = [type_code(t) for t in el.get("type", [])]
            # Keep order stable but drop duplicates (a type listed twice with different profiles).
            types = list(dict.fromkeys(types))
            if kind == "resource" and path == f"{root}.id":
                # The 4.0.1 snapshots type Resource.id as System.String with fhir-type `string`, but the
                # spec's resource definition (https://hl7.org/fhir/R4/resource.html#Resource) and
                # https://hl7.org/fhir/R4/resource.html#id make it an `id` (1-64 of [A-Za-z0-9\-\.]).
                types = ["id"]
        entry = {
            "name": name,
            "types": types,
            "min": el.get("min", 0),
            "max": None if el.get("max", "*") == "*" else int(el["max"]),
        }
        if el.get("isSummary"):
            entry["summary"] = True
        if el.get("isModifier"):
            entry["modifier"] = True
        binding = el.get("binding") or {}
        if binding.get("strength") == "required" and "code" in types and binding.get("valueSet"):
            url = strip_version(binding["valueSet"])
            entry["binding"] = url
            if url not in bindings:
                codes = terminology.expand(url)
                bindings[url] = None if codes is None else sorted(codes)
        out[parent]["elements"].append(entry)
    return out


def build_structures(source: Path) -> dict:
    terminology = Terminology(load_bundle(source / "valuesets.json"))
    sds = [
        r
        for name in ("profiles-types.json", "profiles-resources.json")
        for r in load_bundle(source / name)
        if r["resourceType"] == "StructureDefinition"
    ]
    by_name = {sd["type"]: sd for sd in sds if sd.get("derivation") != "constraint"}
    structures: dict[str, dict] = {}
    primitives: dict[str, dict] = {}
    resource_types: list[str] = []
    bindings: dict[str, list[str] | None] = {}
    for sd in sds:
        # Constraint profiles (SimpleQuantity, MoneyQuantity) are referenced through their base type
        # in element types; logical models (MetadataResource) are not instantiable.
        if sd.get("derivation") == "constraint" or sd["kind"] == "logical":
            continue
        if sd["kind"] == "primitive-type":
            primitives[sd["type"]] = primitive_info(sd, by_name)
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resource_types.append(sd["type"])
        for name, entry in structure_entries(sd, terminology, bindings).items():
            if name in structures:
                raise ValueError(f"duplicate structure {name}")
            structures[name] = entry
    return {
        "format": FORMAT_VERSION,
        "fhirVersion": "4.0.1",
        "resourceTypes": sorted(resource_types),
        "primitives": primitives,
        "structures": structures,
        "valueSets": bindings,
    }


# ---------------------------------------------------------------------------------------------
# Search parameters


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on top-level `|` (outside parentheses, brackets and strings)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    i = 0
    while i < len(expression):
        ch = expression[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'`\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
        i += 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def leading_type(part: str) -> str:
    head = part.lstrip("( ")
    name = ""
    for ch in head:
        if ch.isalnum() or ch == "_":
            name += ch
        else:
            break
    return name


def expression_for_base(expression: str, base: str) -> str:
    """The subexpression of a multi-base SearchParameter that applies to `base`."""
    if not expression:
        return ""
    parts = split_union(expression)
    mine = [p for p in parts if leading_type(p) == base]
    if not mine:
        # Resource/DomainResource-based parameters (`Resource.id`) apply to every type as written.
        return expression
    return " | ".join(mine)


def build_search(source: Path) -> dict:
    params: dict[str, dict[str, dict]] = {}
    for sp in load_bundle(source / "search-parameters.json"):
        if sp["resourceType"] != "SearchParameter":
            continue
        full = sp.get("expression", "")
        for base in sp["base"]:
            per_base = params.setdefault(base, {})
            if sp["code"] in per_base:
                raise ValueError(f"duplicate search parameter {base}.{sp['code']}")
            entry = {
                "type": sp["type"],
                "url": sp["url"],
                "base": sp["base"],
                "expression": expression_for_base(full, base),
            }
            if full and entry["expression"] != full:
                entry["fullExpression"] = full
            if sp.get("target"):
                entry["target"] = sp["target"]
            if sp.get("component"):
                entry["component"] = [[c["definition"], c["expression"]] for c in sp["component"]]
            per_base[sp["code"]] = entry
    return {"format": FORMAT_VERSION, "params": params}


def build_compartments(source: Path) -> dict:
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted((source / "compartments").glob("*.json")):
        with path.open(encoding="utf-8") as fh:
            cd = json.load(fh)
        out[cd["code"]] = {r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")}
    return {"format": FORMAT_VERSION, "compartments": out}


# ---------------------------------------------------------------------------------------------


def write_gz(path: Path, data: dict) -> int:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # mtime=0 and no file name in the header keep the bytes reproducible.
    blob = gzip.compress(raw, compresslevel=9, mtime=0)
    path.write_bytes(blob)
    return len(blob)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the HL7 R4 files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    source: Path = args.source
    args.out.mkdir(parents=True, exist_ok=True)

    structures = build_structures(source)
    search = build_search(source)
    compartments = build_compartments(source)
    sizes = {
        "structures.json.gz": write_gz(args.out / "structures.json.gz", structures),
        "search.json.gz": write_gz(args.out / "search.json.gz", search),
        "compartments.json.gz": write_gz(args.out / "compartments.json.gz", compartments),
    }
    checked = sum(1 for codes in structures["valueSets"].values() if codes is not None)
    print(
        f"{len(structures['resourceTypes'])} resource types, {len(structures['structures'])} structures, "
        f"{len(structures['primitives'])} primitives; required code bindings: {checked} value sets expanded, "
        f"{len(structures['valueSets']) - checked} not expandable (skipped)"
    )
    for name, size in sizes.items():
        print(f"  {name}: {size:,} bytes")
    print(f"  total: {sum(sizes.values()):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
