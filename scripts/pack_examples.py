"""Pack HL7's official R4 example resources into tests/data/r4-examples.tar.xz for the round-trip test.

Source: the `hl7.fhir.r4.examples@4.0.1` npm package (CC0), fetched with
`npm pack hl7.fhir.r4.examples@4.0.1`. Kept: every example resource; left out: the conformance
definitions the package also carries (StructureDefinition, ValueSet, CodeSystem, SearchParameter,
...) and the ten large Bundles that repackage those definitions (over 1 MB each).

Usage: python scripts/pack_examples.py PATH/TO/hl7.fhir.r4.examples-4.0.1.tgz
"""

import io
import re
import sys
import tarfile
from pathlib import Path

DEFINITIONS = re.compile(
    r"^(StructureDefinition|ValueSet|CodeSystem|SearchParameter|OperationDefinition|ConceptMap|"
    r"NamingSystem|CompartmentDefinition|CapabilityStatement|ImplementationGuide|StructureMap)-"
)
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "r4-examples.tar.xz"


def main(source: str) -> None:
    kept = 0
    with tarfile.open(source) as package, tarfile.open(OUT, "w:xz") as out:
        for member in sorted(package.getmembers(), key=lambda m: m.name):
            name = member.name.removeprefix("package/")
            if "/" in name or not name.endswith(".json") or name in ("package.json", "ig-r4.json"):
                continue
            if DEFINITIONS.match(name) or (name.startswith("Bundle-") and member.size > 1_000_000):
                continue
            data = package.extractfile(member).read()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
            kept += 1
    print(f"{kept} examples -> {OUT}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
