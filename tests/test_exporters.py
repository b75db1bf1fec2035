"""The exporter registry (converters.exporter): one exporter per exported family, asked
without importing any converter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from converters.export import ExportOptions
from converters.exporter import EXPORTERS, exporter_for
from core.formats import FORMATS, TENSORFLOW, get_format


def test_every_exported_family_has_its_exporter_and_the_reference_none():
    families = {spec.family for spec in FORMATS.values() if spec.exported}
    assert set(EXPORTERS) == families
    for spec in FORMATS.values():
        if spec.exported:
            assert exporter_for(spec).family == spec.family
    with pytest.raises(KeyError):
        exporter_for(get_format(TENSORFLOW))


def test_every_source_chain_ends_in_an_export_made_from_the_model():
    for spec in FORMATS.values():
        if not spec.exported:
            continue
        chain, options = [spec], ExportOptions()
        source = exporter_for(spec).source(spec, options)
        while source is not None:
            made_from = get_format(source.format)
            assert made_from.exported and made_from not in chain, [s.name for s in chain]
            chain.append(made_from)
            source = exporter_for(made_from).source(made_from, source.options)


def test_asking_the_exporters_imports_no_converter():
    code = ("import sys\n"
            "from converters.export import ExportOptions, resolve_frames\n"
            "from converters.support import support_rows\n"
            "from core.formats import FORMATS\n"
            "for spec in FORMATS.values():\n"
            "    if spec.exported:\n"
            "        ExportOptions().key(spec)\n"
            "support_rows(['t0'])\n"
            "heavy = ('tensorflow', 'tf2onnx', 'onnx', 'onnxslim', 'openvino', 'tensorrt',\n"
            "         'ai_edge_litert', 'official')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
