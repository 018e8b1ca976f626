"""Pure parts of kit's ctx API: option resolution, the status line, prompts (terminal and headless), the
FakeHost answers, and a subagent's policy binding in the emitter."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ext_sdk import Extension, HostCallError
from ext_sdk.testing import FakeHost
from host.agent.emitter import Emitter, PolicyBinding
from host.agent.prompts_ui import TerminalPrompts, TerminalStatus, format_status
from host.exthost.hostcalls import Options, option_env_name
from host.exthost.services import HeadlessPrompts, LocalServices, StatusLine


def test_options_resolve_runtime_then_environment_then_config_then_default() -> None:
    env = {"KITHOST_OPT_MAX_COST": "5"}
    options = Options({"max-cost": "3", "theme": "dark"}, env)
    assert option_env_name("max-cost") == "KITHOST_OPT_MAX_COST"
    assert options.register("budget", "max-cost", "1", "USD cap") == "5"  # environment beats config
    assert options.register("ui", "theme", "light", "") == "dark"  # config beats the default
    assert options.register("ui", "width", "80", "") == "80"
    assert options.register("other", "width", "120", "") == "80"  # the first registration's default stays
    assert options.get("unregistered") is None
    options.set("max-cost", "9")
    assert options.get("max-cost") == "9"  # runtime beats everything
    assert options.registered["max-cost"] == ("budget", "1", "USD cap")


def test_status_line_orders_by_priority_then_age_and_removes_on_empty_text() -> None:
    seen: list[list[tuple[str, str, str]]] = []
    line = StatusLine(seen.append)
    line.set("a", "k", "low", 0)
    line.set("b", "k", "high", 10)
    line.set("a", "j", "low too", 0)
    assert line.items() == [("b", "k", "high"), ("a", "k", "low"), ("a", "j", "low too")]
    line.set("a", "k", "low again", 0)  # an update keeps its place
    assert [t for _, _, t in line.items()] == ["high", "low again", "low too"]
    line.set("b", "k", "", 0)
    assert [t for _, _, t in line.items()] == ["low again", "low too"] and len(seen) == 5
    assert format_status(line.items()) == "low again · low too"
    out = io.StringIO()
    sink = TerminalStatus(out)
    sink(line.items())
    sink(line.items())  # unchanged: not written again
    sink([])
    assert out.getvalue() == "[status] low again · low too\n"


def _answers(*lines: str | BaseException) -> Any:
    queue = list(lines)

    def read(prompt: str) -> str:
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return read


def test_terminal_select_by_number_or_text_and_cancel_on_empty_eof_or_three_wrong_answers() -> None:
    out = io.StringIO()
    assert TerminalPrompts(out, _answers("2")).select("x", "pick", ["a", "b"]) == {
        "value": "b", "index": 1, "cancelled": False}
    assert "[x] pick\n  1. a\n  2. b\n" in out.getvalue()
    assert TerminalPrompts(out, _answers("7", "a")).select("x", "pick", ["a", "b"])["index"] == 0
    for answers in (("",), (EOFError(),), (KeyboardInterrupt(),), ("z", "y", "x")):
        result = TerminalPrompts(io.StringIO(), _answers(*answers)).select("x", "pick", ["a", "b"])
        assert result == {"value": "", "index": -1, "cancelled": True}, answers


def test_terminal_confirm_and_input() -> None:
    ask = TerminalPrompts(io.StringIO(), _answers("YES", "", "maybe", "n", EOFError()))
    assert ask.confirm("x", "go?", False) == {"value": True, "cancelled": False}
    assert ask.confirm("x", "go?", True) == {"value": True, "cancelled": False}  # empty: the default
    assert ask.confirm("x", "go?", True) == {"value": False, "cancelled": False}  # asked again after "maybe"
    assert ask.confirm("x", "go?", False) == {"value": False, "cancelled": True}
    text = TerminalPrompts(io.StringIO(), _answers("  bob ", "", EOFError()))
    assert text.input("x", "name?", "", "anon") == {"value": "bob", "cancelled": False}
    assert text.input("x", "name?", "", "anon") == {"value": "anon", "cancelled": False}
    assert text.input("x", "name?", "", "anon") == {"value": "anon", "cancelled": True}


def test_headless_prompts_cancel_and_local_services_run_no_agent() -> None:
    headless = HeadlessPrompts()
    assert headless.select("x", "m", ["a"])["cancelled"] and headless.confirm("x", "m", True) == {
        "value": True, "cancelled": True}
    services = LocalServices(io.StringIO())
    assert services.prompt("x", "input", {"message": "m", "default": "d"}) == {"value": "d", "cancelled": True}
    assert services.agent_call("x", "is_idle", {}) is True
    with pytest.raises(Exception, match="compact is not available: this host runs no agent"):
        services.agent_call("x", "compact", {})


def test_fake_host_answers_the_ctx_api_in_memory() -> None:
    ext = Extension("t", permissions=["llm", "agent"])

    @ext.command("go")
    def go(args: str, ctx: Any) -> str:
        ctx.set_status("s", "on")
        value = ctx.register_option("level", "3")
        picked = ctx.prompt_select("which?", ["a", "b"])
        answer = ctx.complete("hi")["text"]
        try:
            ctx.get_tools()
        except HostCallError as exc:
            return f"{value} {picked['value']} {answer} | {exc}"
        return "unreachable"

    host = FakeHost(ext)
    host.prompt_answers.append({"value": "b", "index": 1, "cancelled": False})
    host.answers["complete"] = lambda args: {"text": args["prompt"].upper(), "model": "m", "input_tokens": 1,
                                             "output_tokens": 1, "cost": None}
    out = host.run_command("go")
    assert out == {"content": "3 b HI | get_tools: FakeHost has no answer; set host.answers['get_tools']",
                   "is_error": False}
    assert host.status == {"s": "on"} and host.options == {"level": "3"}
    assert [m for m, _ in host.calls] == ["set_status", "register_option", "prompt_select", "complete", "get_tools"]


def test_a_subagents_tool_events_go_to_the_parent_with_the_subagent_field() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    parent = Emitter(None, lambda t, d: seen.append((t, d)))
    child_seen: list[str] = []
    child = Emitter(None, lambda t, d: child_seen.append(t), binding=PolicyBinding(parent, {"id": "s1", "task": "t"}))
    child.emit("tool_call", {"tool_call_id": "c", "subagent": None})
    child.emit("step_start", {"step_number": 1})
    assert seen == [("tool_call", {"tool_call_id": "c", "subagent": {"id": "s1", "task": "t"}})]
    assert child_seen == ["tool_call", "step_start"]  # the child's sink still sees its own events
