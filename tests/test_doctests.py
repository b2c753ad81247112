"""Every docstring example of jaxcnn, run as a doctest (the README's Python blocks: test_readme.py).

Examples are written as a user types them at a clone's root, as the README's are: they read the repository's
model files (experiments/caffe/..., experiments/cudaconvnet/...) and MNIST from ../shared/data/mnist. Each docstring
runs in the reader_dir fixture's directory, which has both (MNIST as a small random set) and is the only place an
example writes to. Doctest options: ELLIPSIS and NORMALIZE_WHITESPACE.

A usage example in a docstring is written as a doctest (`>>>`), so that it runs here: test_examples_are_doctests
finds indented Python outside `>>>` examples.
"""
import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
from conftest import missing_package

import jaxcnn

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PACKAGE = Path(jaxcnn.__file__).parent


def module_names():
    """jaxcnn and every module under it but __main__ (whose import runs the command line)."""
    found = pkgutil.walk_packages(jaxcnn.__path__, "jaxcnn.")  # a package that fails to import: examples() says why
    return ["jaxcnn", *sorted(m.name for m in found if m.name.rsplit(".", 1)[-1] != "__main__")]


def examples():
    """One pytest param per docstring holding examples, named after its object (jaxcnn.net.Graph); a module that
    needs a package not installed here gives one skipped param naming it."""
    params, finder = [], doctest.DocTestFinder()
    for name in module_names():
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            if missing_package(e) is None:
                raise
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"{name} needs "
                                                                                    f"{missing_package(e)}")))
            continue
        params += [pytest.param(test, id=test.name) for test in finder.find(module) if test.examples]
    return params


@pytest.mark.parametrize("test", examples())
def test_docstring(test, reader_dir):
    runner, report = doctest.DocTestRunner(optionflags=FLAGS), []
    runner.run(test, out=report.append)
    assert not runner.failures, "".join(report)


def code_lines(docstring):
    """The indented lines of a docstring's text outside its `>>>` examples that parse as Python with a call in
    them (`net = Net([...])`, `fit(trainer, ...)`): usage examples that no doctest runs."""
    text = "".join(part for part in doctest.DocTestParser().parse(docstring) if isinstance(part, str))
    lines = []
    for line in text.splitlines():
        if not line.startswith(" "):
            continue
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        if any(isinstance(node, ast.Call) for node in ast.walk(tree)):
            lines.append(line.strip())
    return lines


def test_examples_are_doctests():
    """No docstring in jaxcnn shows Python that no doctest runs."""
    untested = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                untested += [f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 1)}: {line}"
                             for line in code_lines(docstring or "")]
    assert not untested, "usage examples to write as doctests (>>>):\n" + "\n".join(untested)
