"""The ONE remote command of `fleet profile` (fleet/remote/profile.sh): its script and stdin.
Its output follows the probe's framing and is read by fleet.remote.probe.parse_probe_output."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fleet.remote.shell import remote_script, script_stdin

# perf's own default is 4000 Hz; 99 Hz keeps the cost on a busy host small and stays out of
# lockstep with the timer tick (flame graph practice).
DEFAULT_FREQUENCY = 99


@cache
def profile_script() -> str:
    """profile.sh with fold.awk in FOLD_AWK (a quoted here-document: no expansion)."""
    awk = resources.files("fleet.remote").joinpath("fold.awk").read_text()
    return f"FOLD_AWK=$(cat <<'FLEET_FOLD_AWK'\n{awk}FLEET_FOLD_AWK\n)\n" + remote_script(
        "profile.sh"
    )


def profile_args(nonce: str, root: str, window: int, frequency: int) -> list[str]:
    return [nonce, root, str(window), str(frequency)]


def profile_stdin(nonce: str, root: str, window: int, frequency: int = DEFAULT_FREQUENCY) -> bytes:
    return script_stdin(profile_script(), profile_args(nonce, root, window, frequency))


# The profile's window when the run samples no CPU (--cpu-window 0): a profile needs one.
PROFILE_WINDOW_S = 5
