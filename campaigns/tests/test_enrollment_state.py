"""One writer of enrollment states: campaigns/enrollment_state.py moves them, by its table, and
no other module assigns or updates Enrollment.state (new enrollments start active).

The scan reads every module's syntax tree, as omni/tests/test_layers.py does for imports, and
reports an assignment of `.state` (also in a tuple, or by setattr) and an update(state=...)
outside the state module. Enrollment is the only model with a `state` field.
"""
import ast
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns import enrollment_state
from campaigns.models import Enrollment, EnrollmentState

ROOT = Path(settings.BASE_DIR)
APPS = ("omni", "contacts", "compliance", "templates", "channels", "campaigns")
STATE_MODULE = ROOT / "campaigns" / "enrollment_state.py"


def state_writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and part.attr == "state":
                    found.append(f"{node.lineno}: assigns .state")
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value == "state"):
                found.append(f"{node.lineno}: setattr state")
            updates = isinstance(func, ast.Attribute) and func.attr == "update"
            if updates and any(k.arg == "state" for k in node.keywords):
                found.append(f"{node.lineno}: update(state=...)")
    return found


def source_files():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts or path == STATE_MODULE:
                continue
            yield path


def test_only_the_state_module_changes_enrollment_states():
    assert [f"{path.relative_to(ROOT)}:{w}" for path in source_files() for w in state_writes(path)] == []


def test_the_scan_sees_every_kind_of_state_write(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "enrollment.state = 'paused'\n"
        "enrollment.state, enrollment.end_reason = 'exited', 'x'\n"
        "setattr(enrollment, 'state', 'active')\n"
        "Enrollment.objects.filter(pk=1).update(state='paused')\n"
        "journey.status = 'paused'\n"
    )

    assert len(state_writes(probe)) == 4


@pytest.mark.parametrize("state", [EnrollmentState.COMPLETED, EnrollmentState.CONVERTED, EnrollmentState.EXITED,
                                   EnrollmentState.FAILED])
def test_an_ended_enrollment_is_never_paused_resumed_or_ended_again(state):
    ended = Enrollment(pk=1, state=state)
    now = timezone.now()

    for move in (lambda: enrollment_state.pause(ended, reason="x", now=now),
                 lambda: enrollment_state.resume(ended, now=now),
                 lambda: enrollment_state.end(ended, EnrollmentState.EXITED, "x", now)):
        with pytest.raises(enrollment_state.EnrollmentMoveRefused):
            move()
    assert ended.state == state


def test_a_paused_enrollment_is_not_paused_again_nor_an_active_one_resumed():
    now = timezone.now()
    with pytest.raises(enrollment_state.EnrollmentMoveRefused):
        enrollment_state.pause(Enrollment(pk=1, state=EnrollmentState.PAUSED), reason="x", now=now)
    with pytest.raises(enrollment_state.EnrollmentMoveRefused):
        enrollment_state.resume(Enrollment(pk=1, state=EnrollmentState.ACTIVE), now=now)
