"""Text from models, plugins and files is printed as it is: never parsed as markup."""

from __future__ import annotations

from harness.cli import main
from harness.store.results import load

MESSAGE = "[enforce fail at alloc_cpu.cpp:127] boom [/red] [bold]:smile:"

MARKUP = f"""
    from torch import nn
    import harness
    from harness import Input, ModelSpec

    class Shouting(nn.Linear):
        def forward(self, x):
            raise RuntimeError({MESSAGE!r})

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="shouting", constructor=Shouting,
                          kwargs={{"in_features": 4, "out_features": 4}},
                          inputs=[Input("x", "(B, 4)")], outputs=["(B, 4)"],
                          batch_sizes=(1,))]
"""


def test_an_error_message_with_markup_is_recorded_and_shown_verbatim(
    plugin_module, tmp_path, capsys
):
    name = plugin_module(MARKUP)
    out = tmp_path / "markup.jsonl"
    code = main(
        [
            "run",
            "-m",
            "shouting",
            "--plugin",
            name,
            "--isolation",
            "none",
            "--max-time",
            "0.01",
            "--out",
            str(out),
            "-q",
        ]
    )
    shown = capsys.readouterr().out
    assert code == 1
    assert MESSAGE in load(out)["error"].iloc[0]
    assert MESSAGE in shown.replace("\n", "")  # the table may wrap it, never eat it


def test_check_shows_a_model_error_with_markup_verbatim(plugin_module, capsys):
    name = plugin_module(MARKUP)
    code = main(["check", "-m", "shouting", "--plugin", name])
    shown = capsys.readouterr().out
    assert code == 1
    assert "shouting: " in shown and MESSAGE in shown
