"""The ``benchmark-tables`` directive: one section per script in ``benchmarks/``.

Each section holds the script's docstring, parsed as reST (what it measures, how, and its
command lines)
and, when ``docs/benchmark_results/<name>.txt`` exists, the table that script printed,
verbatim, with the command and machine recorded at the top of that file. Without a
recorded file the section says which command prints the table: the documentation never
shows a number that a script did not print. The scripts are read, never run, by the build.
"""

from __future__ import annotations

import ast
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

__all__ = ["BenchmarkTables", "setup"]


def _paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph(text=" ".join(text.split()))


class BenchmarkTables(SphinxDirective):
    """``.. benchmark-tables::`` with the benchmarks folder, relative to the conf dir, as argument."""

    required_arguments = 1

    def run(self):
        folder = (Path(self.env.srcdir) / self.arguments[0]).resolve()
        results = Path(self.env.srcdir) / "benchmark_results"
        self.env.note_dependency(str(folder))
        sections = []
        scripts = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
        if not scripts:
            return [_paragraph(f"No benchmark scripts were found in {self.arguments[0]}.")]
        for script in scripts:
            self.env.note_dependency(str(script))
            name = script.stem
            section = nodes.section(ids=[nodes.make_id(f"benchmark-{name}")])
            section += nodes.title(text=f"benchmarks/{script.name}")
            doc = ast.get_docstring(ast.parse(script.read_text())) or ""
            # the docstring is reST, like every docstring of the project
            section += self.parse_text_to_nodes(doc, offset=0)
            recorded = results / f"{name}.txt"
            if recorded.is_file():
                self.env.note_dependency(str(recorded))
                section += _paragraph("What the script printed (the first lines say the command and the machine):")
                text = recorded.read_text().rstrip()
                section += nodes.literal_block(text, text)
            else:
                para = nodes.paragraph()
                para += nodes.Text("No recorded table yet: run ")
                para += nodes.literal(text=f"python benchmarks/{script.name}")
                para += nodes.Text(" to print it.")
                section += para
            sections.append(section)
        return sections


def setup(app):
    app.add_directive("benchmark-tables", BenchmarkTables)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
