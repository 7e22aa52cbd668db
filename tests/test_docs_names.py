"""The docs name code; a rename must not leave them pointing at nothing.

docs/glossary.md: every class, member, function, config field, constant and file in its `code`
column exists under that name (a bare lowercase name is either planet's or one of the local
variables listed here), and the defaults it lists are the config's. The other docs and the
READMEs: every `Class.member`, config field, function call and test they name exists (their
other spans: shell commands, file names, the official code's names, are left alone)."""

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
CONFIG = flatten(Config().to_dict())
FIELD_NAMES = {key.split(".")[-1] for key in CONFIG}  # `test_interval` is a field, not a test
# The glossary's names of local variables and dict keys: no import can check them.
LOCAL_NAMES = {"obs", "action", "reward", "embedding", "belief", "state", "mean", "stddev",
               "actions", "returns", "obs_mean", "reward_mean"}
FILE_SUFFIX = re.compile(r"\.(py|md|json|jsonl|log|txt|png|gif|mp4|npz|pt|toml|sh)$")


def code_cells() -> list[tuple[str, str]]:
    """(code cell, default cell) of each row of the glossary's tables whose second column is
    `code`; the default cell is the last one where that column is a default or a note (the
    objective's table gives its defaults there), else ''."""
    rows, in_table, has_defaults = [], False, False
    for line in GLOSSARY.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            in_table = False
        elif len(cells) > 1 and cells[1] == "code":
            in_table, has_defaults = True, "default" in cells[-1] or cells[-1] == "note"
        elif in_table and not set(line) <= set("|- "):
            rows.append((cells[1], cells[-1] if has_defaults else ""))
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


NAMESPACE = package_namespace()


def has_member(cls: type, name: str) -> bool:
    """An attribute, property, dataclass or NamedTuple field, or a `self.name` the class
    assigns (`self.name = ...` or `self.name: T = ...`, not a comparison)."""
    if hasattr(cls, name) or name in getattr(cls, "_fields", ()):
        return True
    if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
        return True
    assignment = rf"\bself\.{name}\b[ \t]*(:[^=\n]*)?=(?!=)"
    return re.search(assignment, inspect.getsource(cls)) is not None


def defined_tests() -> dict[str, set[str]]:
    """Test function names by test file."""
    return {path.relative_to(ROOT).as_posix(): set(re.findall(r"^def (test_\w+)",
                                                             path.read_text(), re.M))
            for path in (ROOT / "tests").glob("test_*.py")}


TESTS = defined_tests()


UNCHECKED = "not a name of planet's that this test can check"


def problem_with(span: str, glossary: bool, owners: tuple[str, ...] = ()) -> str | None:
    """What is wrong with the code `span` names: None when it exists, UNCHECKED for a span that
    names nothing checkable (a shell command, the official code's names). In the glossary, a
    bare lowercase name may be a member of a class its cell names (`owners`)."""
    span = span.removeprefix("--set ").strip()
    if span.startswith("tests/"):
        path, _, test = span.partition("::")
        if path not in TESTS:
            return f"{path} does not exist"
        return None if not test or test in TESTS[path] else f"{path} has no {test}"
    if re.fullmatch(r"test_\w+", span) and span not in FIELD_NAMES:
        return None if any(span in names for names in TESTS.values()) else f"no test {span}"
    if "/" in span:  # a file of ours in the glossary; elsewhere, often the official code's
        if not glossary:
            return UNCHECKED
        return None if (ROOT / span).exists() else f"{span}: no such file"
    if FILE_SUFFIX.search(span) or span in {"None", "True", "False"}:
        return UNCHECKED
    dotted = re.match(r"(\w+)\.(\w+)(\(|=|$)", span)
    if dotted:
        return dotted_problem(*dotted.groups(), glossary)
    called = re.match(r"(\w+)\(", span)
    if called:
        if called.group(1) in NAMESPACE:
            return None
        return f"no {called.group(1)} defined in planet" if glossary else UNCHECKED
    if not glossary:  # bare names elsewhere: env variables, the official code's classes
        return UNCHECKED
    if re.fullmatch(r"[A-Z][A-Za-z0-9]+|[A-Z][A-Z0-9_]{3,}", span):
        return None if span in NAMESPACE else f"no {span} defined in planet"
    if re.fullmatch(r"[a-z_][a-z0-9_]*", span):
        member = any(has_member(NAMESPACE[owner], span) for owner in owners
                     if inspect.isclass(NAMESPACE.get(owner)))
        known = span in NAMESPACE or span in LOCAL_NAMES or span in FIELD_NAMES or member
        return None if known else f"{span}: not planet's, and not a listed local name"
    return UNCHECKED


def dotted_problem(owner: str, member: str, after: str, glossary: bool) -> str | None:
    """`section.field` (a config field, or the world model's `model.encoder`), `model.net(...)`,
    or `Class.member`; another owner (torch.clamp, tf.nn.moments) is not ours: UNCHECKED."""
    if owner in CONFIG_SECTIONS and after != "(":
        world_model_member = owner == "model" and has_member(NAMESPACE["WorldModel"], member)
        known = f"{owner}.{member}" in CONFIG or world_model_member
        return None if known else f"{owner}.{member}: no config field"
    if owner == "model":  # the world model's networks, called: model.decoder(features)
        return None if has_member(NAMESPACE["WorldModel"], member) else (
            f"WorldModel has no {member}")
    if not owner[0].isupper():
        return UNCHECKED
    if not inspect.isclass(NAMESPACE.get(owner)):  # in the glossary, a renamed class
        return f"no class {owner} in planet" if glossary else UNCHECKED
    return None if has_member(NAMESPACE[owner], member) else f"{owner} has no {member}"


def classes_named(cell: str) -> tuple[str, ...]:
    """The class names in a glossary cell: `WorldModel`, `RSSM.prior`, `→ Losses`."""
    return tuple(sorted(set(re.findall(r"\b([A-Z][A-Za-z0-9]+)\b", cell))))


GLOSSARY_SPANS = [(cell, default, span) for cell, default in code_cells()
                  for span in re.findall(r"`([^`]+)`", cell)
                  if problem_with(span, True, classes_named(cell)) != UNCHECKED]


def doc_spans() -> list[tuple[str, str]]:
    """(doc, span) for each distinct code span of the docs and READMEs that names something of
    planet's (a class member, config field, function or test)."""
    return sorted({(doc.relative_to(ROOT).as_posix(), span) for doc in DOCS
                   for span in re.findall(r"`([^`\n]+)`", doc.read_text())
                   if problem_with(span, glossary=False) != UNCHECKED})


DOC_SPANS = doc_spans()


def test_the_glossary_has_tables_to_check():
    assert len(code_cells()) >= 40
    assert sum(span.startswith("train.") for _, _, span in GLOSSARY_SPANS) >= 13


@pytest.mark.parametrize("cell,default,span", GLOSSARY_SPANS,
                         ids=[span for _, _, span in GLOSSARY_SPANS])
def test_glossary_name_exists(cell: str, default: str, span: str):
    problem = problem_with(span, glossary=True, owners=classes_named(cell))
    assert problem is None, problem


def test_the_docs_name_code_to_check():
    docs = {doc for doc, _ in DOC_SPANS}
    assert {"docs/theory.md", "docs/theory.zh-CN.md", "docs/choices.md"} <= docs
    assert sum(span.startswith("tests/") for _, span in DOC_SPANS) >= 4


@pytest.mark.parametrize("doc,span", DOC_SPANS, ids=[f"{doc}:{span}" for doc, span in DOC_SPANS])
def test_doc_name_exists(doc: str, span: str):
    problem = problem_with(span, glossary=False)
    assert problem is None, f"{doc}: {problem}"


@pytest.mark.parametrize("span,problem", [
    ("RSSM.observe_steps", "RSSM has no observe_steps"),
    ("RSSM.imagine_all(action)", "RSSM has no imagine_all"),
    ("model.decoders(features)", "WorldModel has no decoders"),
    ("model.min_std", "model.min_std: no config field"),
    ("--set train.batch_sizes=50", "train.batch_sizes: no config field"),
    ("gauss_kl(q, p)", "no gauss_kl defined in planet"),
    ("ACTION_REPEAT", "no ACTION_REPEAT defined in planet"),
    ("preprocess_observation", "preprocess_observation: not planet's, and not a listed local name"),
    ("tests/test_objectives.py::test_nothing", "tests/test_objectives.py has no test_nothing"),
    ("test_nothing_at_all", "no test test_nothing_at_all"),
    ("planet/no_such_module.py", "planet/no_such_module.py: no such file"),
])
def test_a_wrong_name_is_caught(span: str, problem: str):
    assert problem_with(span, glossary=True) == problem


def test_names_that_exist_pass_in_every_form():
    for span in ("RSSM.observe_step", "RSSM.imagine(action, belief, state)",
                 "model.decoder(features)", "model.belief_size", "--set train.batch_size=50",
                 "gaussian_kl(q, p)", "ACTION_REPEATS", "CUDA_NATIVE_BF16", "preprocess_obs",
                 "obs", "test_interval", "Rollout.features", "Losses"):
        assert problem_with(span, glossary=True) is None, span


def test_an_assignment_is_a_member_and_a_comparison_is_not():
    class Example:
        def __init__(self):
            self.kept: int = 1
            if self.ghost == 2:
                pass

    assert has_member(Example, "kept") and not has_member(Example, "ghost")


CONFIG_DEFAULTS = [(span, default) for _, default, span in GLOSSARY_SPANS
                   if re.search(r"\d", default)
                   and re.fullmatch(r"(train|planner|env|model)\.\w+", span)]


def test_every_default_column_names_config_fields():
    assert len(CONFIG_DEFAULTS) >= 14
    assert {"planner.horizon", "train.free_nats", "env.action_repeat"} <= set(dict(CONFIG_DEFAULTS))


@pytest.mark.parametrize("span,default", CONFIG_DEFAULTS, ids=[span for span, _ in CONFIG_DEFAULTS])
def test_glossary_default_is_the_configs(span: str, default: str):
    """A row with one field and one number, or two of each ("1e-3, 1e-4"), in the same order."""
    row = next(cell for cell, _ in code_cells() if f"`{span}`" in cell)
    fields = re.findall(r"`((?:train|planner|env|model)\.\w+)`", row)
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", default)
    if span == "env.action_repeat":  # 0 in the config: the per-task table it stands for
        from planet.tasks import ACTION_REPEATS

        assert CONFIG[span] == 0
        table = dict(re.findall(r"(\w+) (\d+)", default))
        assert {task.split("-")[0].split("_")[-1]: repeat
                for task, repeat in ACTION_REPEATS.items()} == {
            name: int(repeat) for name, repeat in table.items()}
        return
    assert len(numbers) == len(fields), f"{row} | {default}"
    assert float(numbers[fields.index(span)]) == float(CONFIG[span]), f"{span}: {default}"
