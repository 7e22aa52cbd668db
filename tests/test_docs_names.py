"""The docs name code; a rename must not leave them pointing at nothing.

docs/glossary.md: every class, member, function, config field, constant and file in its `code`
column exists under that name, and the defaults it lists are the config's. The other docs and
the READMEs: every `Class.member`, config field and test they name exists."""

import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import planet
from planet.config import Config, flatten

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"
DOCS = sorted((ROOT / "docs").glob("*.md")) + sorted(ROOT.glob("README*.md"))
CONFIG_SECTIONS = {"env", "model", "train", "planner", "machine"}


def code_cells() -> list[tuple[str, str]]:
    """(code cell, last cell) of every table row below a header whose second column is `code`."""
    rows, in_table = [], False
    for line in GLOSSARY.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            in_table = False
        elif len(cells) > 1 and cells[1] == "code":
            in_table, header_last = True, cells[-1]
        elif in_table and not set(line) <= set("|- "):
            rows.append((cells[1], cells[-1] if header_last == "default" else ""))
    return rows


def package_namespace() -> dict[str, object]:
    """Every public class, function and constant defined in a planet module, by name."""
    found: dict[str, object] = {}
    for info in pkgutil.walk_packages(planet.__path__, "planet."):
        if info.name.endswith("__main__"):  # it runs the command line
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", info.name) == info.name
            if not name.startswith("_") and defined_here:
                found.setdefault(name, value)
    return found


def has_member(cls: type, name: str) -> bool:
    """An attribute, property, dataclass or NamedTuple field, or a `self.name` the class sets."""
    if hasattr(cls, name) or name in getattr(cls, "_fields", ()):
        return True
    if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
        return True
    return re.search(rf"\bself\.{name}\b\s*(:[^=]*)?=", inspect.getsource(cls)) is not None


NAMES = [(cell, default, span) for cell, default in code_cells()
         for span in re.findall(r"`([^`]+)`", cell)]


def test_the_glossary_has_tables_to_check():
    assert len(code_cells()) >= 40
    assert sum(span.startswith("train.") for _, _, span in NAMES) >= 13


@pytest.fixture(scope="module")
def namespace() -> dict[str, object]:
    return package_namespace()


@pytest.mark.parametrize("cell,default,span", NAMES, ids=[span for _, _, span in NAMES])
def test_glossary_name_exists(cell: str, default: str, span: str, namespace):
    config = flatten(Config().to_dict())
    dotted = re.match(r"^(\w+)\.(\w+)", span)
    called = re.match(r"^(\w+)\(", span)
    if "/" in span:
        assert (ROOT / span).exists(), f"{span}: no such file"
    elif dotted and dotted.group(1) in CONFIG_SECTIONS and "(" not in span:
        assert span in config, f"{span}: no such config field"
    elif dotted and dotted.group(1) == "model":  # the WorldModel's networks: model.decoder(...)
        assert has_member(namespace["WorldModel"], dotted.group(2)), span
    elif dotted and dotted.group(1)[0].isupper():
        owner = namespace.get(dotted.group(1))
        assert inspect.isclass(owner), f"{span}: no class {dotted.group(1)} in planet"
        assert has_member(owner, dotted.group(2)), f"{span}: {owner.__name__} lacks that member"
    elif called or re.fullmatch(r"[A-Z][A-Za-z]+|[A-Z_]{4,}", span):
        name = called.group(1) if called else span
        assert name in namespace, f"{span}: no {name} defined in planet"
    # Anything else is a local variable's name (`obs`, `actions`) that no import can check.


CONFIG_DEFAULTS = [(span, default) for _, default, span in NAMES
                   if default and re.fullmatch(r"(train|planner|env|model)\.\w+", span)]


def test_every_default_column_names_config_fields():
    assert len(CONFIG_DEFAULTS) >= 10


@pytest.mark.parametrize("span,default", CONFIG_DEFAULTS, ids=[span for span, _ in CONFIG_DEFAULTS])
def test_glossary_default_is_the_configs(span: str, default: str):
    """A row with one field and one number, or two of each ("1e-3, 1e-4"), in the same order."""
    config = flatten(Config().to_dict())
    row = next(cell for cell, _ in code_cells() if f"`{span}`" in cell)
    fields = re.findall(r"`((?:train|planner|env|model)\.\w+)`", row)
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", default)
    if span == "env.action_repeat":  # 0 in the config: the per-task table it stands for
        from planet.tasks import ACTION_REPEATS

        assert config[span] == 0
        table = dict(re.findall(r"(\w+) (\d+)", default))
        assert {task.split("-")[0].split("_")[-1]: repeat
                for task, repeat in ACTION_REPEATS.items()} == {
            name: int(repeat) for name, repeat in table.items()}
        return
    assert len(numbers) == len(fields), f"{row} | {default}"
    assert float(numbers[fields.index(span)]) == float(config[span]), f"{span}: {default}"


def doc_spans() -> list[tuple[str, str]]:
    """(doc, span) for each code span of the docs that names a class member, a config field
    or a test; other spans (variables, the official code's paths, shell commands) are left."""
    checkable = re.compile(r"[A-Z][A-Za-z]+\.\w+|(env|model|train|planner|machine)\.\w+"
                           r"|tests/[\w/]+\.py(::test_\w+)?|test_\w+")
    fields = {key.split(".")[-1] for key in flatten(Config().to_dict())}  # test_interval
    found = set()
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
            if span in fields:
                continue
            if checkable.fullmatch(span) and not re.search(r"\.(py|log|json|jsonl)$", span):
                found.add((doc.relative_to(ROOT).as_posix(), span))
            elif span.startswith("tests/"):
                found.add((doc.relative_to(ROOT).as_posix(), span))
    return sorted(found)


def defined_tests() -> dict[str, set[str]]:
    """Test function names by test file."""
    return {path.relative_to(ROOT).as_posix(): set(re.findall(r"^def (test_\w+)",
                                                             path.read_text(), re.M))
            for path in (ROOT / "tests").glob("test_*.py")}


def test_the_docs_name_code_to_check():
    docs = {doc for doc, _ in doc_spans()}
    assert {"docs/theory.md", "docs/theory.zh-CN.md", "docs/choices.md"} <= docs
    assert sum(span.startswith("tests/") for _, span in doc_spans()) >= 4


@pytest.mark.parametrize("doc,span", doc_spans(), ids=[f"{d}:{s}" for d, s in doc_spans()])
def test_doc_name_exists(doc: str, span: str, namespace):
    config = flatten(Config().to_dict())
    defined = defined_tests()
    if span.startswith("tests/"):
        path, _, test = span.partition("::")
        assert (ROOT / path).exists(), f"{doc}: {path} does not exist"
        assert not test or test in defined[path], f"{doc}: {path} has no {test}"
    elif span.startswith("test_"):
        assert any(span in names for names in defined.values()), f"{doc}: no test {span}"
    elif span[0].isupper():
        owner, member = span.split(".")
        assert inspect.isclass(namespace.get(owner)), f"{doc}: no class {owner} in planet"
        assert has_member(namespace[owner], member), f"{doc}: {owner} has no {member}"
    else:
        section, name = span.split(".")
        world_model_member = section == "model" and has_member(namespace["WorldModel"], name)
        assert span in config or world_model_member, f"{doc}: {span} is no config field"
