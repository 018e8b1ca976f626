"""How a step's request is built from ``prepare_step``/``before_model`` results and the active tools (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.agent import AgentConfig, AgentError, AgentLoop, SessionTree, ToolRegistry
from host.agent.emitter import Emitter
from host.agent.loop import _Request


def _loop(tmp_path: Path) -> AgentLoop:
    tree = SessionTree.create(tmp_path / "s.jsonl", cwd=tmp_path)
    config = AgentConfig(llm_params={"temperature": 0.7, "api_key": "secret", "script": "x.json"})
    return AgentLoop(model="scripted/m", tree=tree, tools=ToolRegistry(tmp_path), emitter=Emitter(None),
                     config=config)


def test_params_replace_only_the_model_params_and_tool_choice_names_a_function(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    try:
        base = loop._llm_params(_Request([], ["read"]))
        assert base == {"temperature": 0.7, "api_key": "secret", "script": "x.json"}
        replaced = loop._llm_params(_Request([], ["read"], "read", {"max_tokens": 9}))
        assert replaced == {"api_key": "secret", "script": "x.json", "max_tokens": 9,
                            "tool_choice": {"type": "function", "function": {"name": "read"}}}
        assert loop._llm_params(_Request([], ["read"], "none"))["tool_choice"] == "none"
        assert "tool_choice" not in loop._llm_params(_Request([], [], "required"))  # no tools: nothing to choose
    finally:
        loop.tree.close()


def test_active_tools_and_unknown_names(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    try:
        everything = loop.active_tools
        assert "bash" in everything and "subagent" in everything
        loop.set_active_tools(["ls", "read"])
        assert loop.active_tools == [n for n in everything if n in ("ls", "read")]
        with pytest.raises(AgentError, match="unknown tool\\(s\\) 'nope'"):
            loop.set_active_tools(["nope"])
        assert loop._known_tools("before_model", ["read", "nope"], ["ls"]) == ["read"]
        loop.set_active_tools([])
        assert loop.active_tools == everything
    finally:
        loop.tree.close()
