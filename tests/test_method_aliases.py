"""Method names as users type them: any case, '-' or '_' or nothing between words, and the aliases
each plugin declares; clashing aliases refused like duplicate names; suggestions from names and aliases."""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from vexplain.cli.main import main
from vexplain.core.adapter import FORWARD
from vexplain.core.registry import REGISTRY, name_key

try:
    import test_plugins_support as support
except ImportError:  # tests/ imported as a package
    from tests import test_plugins_support as support


@pytest.mark.parametrize(
    "typed, method",
    [
        ("GradCAM", "gradcam"),
        ("grad-cam", "gradcam"),
        ("Grad_CAM", "gradcam"),
        ("gradcam++", "gradcam_plusplus"),
        ("Grad-CAM++", "gradcam_plusplus"),
        ("GradCamPlusPlus", "gradcam_plusplus"),
        ("ig", "integrated_gradients"),
        ("IG", "integrated_gradients"),
        ("integrated-gradients", "integrated_gradients"),
        ("IntegratedGradients", "integrated_gradients"),
        ("smooth-grad", "smoothgrad"),
        ("SmoothGrad", "smoothgrad"),
        ("InputXGradient", "input_x_gradient"),
        ("Score-CAM", "scorecam"),
    ],
)
def test_typed_names_resolve_to_the_method(typed, method):
    assert REGISTRY.explainer(typed).name == method


def test_gradcam_plus_plus_is_not_gradcam():
    assert name_key("gradcam++") != name_key("gradcam")
    assert REGISTRY.explainer("gradcam++").name != REGISTRY.explainer("gradcam").name


def test_an_alias_explains_exactly_as_the_name_and_records_the_name():
    model, x = support.tiny_model(), support.tiny_inputs()
    by_name = vx.explain(model, x, method="input_x_gradient", targets=1)
    by_alias = vx.explain(model, x, method="InputXGradient", targets=1)
    assert by_alias.method == "input_x_gradient"
    np.testing.assert_array_equal(by_alias.maps, by_name.maps)


@pytest.mark.parametrize(
    "typed, suggested",
    [
        ("gradcm", "gradcam"),
        ("gradcam+++", "gradcam_plusplus"),  # close to the alias gradcam++ only
        ("igg", "integrated_gradients"),  # close to the alias ig only
        ("smoothgrd", "smoothgrad"),
    ],
)
def test_suggestions_come_from_names_and_aliases(typed, suggested):
    with pytest.raises(vx.UnknownMethod, match=f"did you mean: [^?]*{suggested}") as caught:
        REGISTRY.explainer(typed)
    assert "\n" not in str(caught.value)


def test_an_unrelated_name_gets_no_suggestion():
    with pytest.raises(vx.UnknownMethod) as caught:
        REGISTRY.explainer("qqqqqqq")
    assert "did you mean" not in str(caught.value)


class _Fake(vx.Explainer):
    requires = (FORWARD,)
    summary = "a fake"
    paper = "none"

    def attribute(self, adapter, inputs, targets, options):
        scores = adapter.forward(inputs)
        return vx.Attribution(maps=inputs.sum(dim=1), scores=scores, targets=targets.select(scores))


def _fake(name: str, aliases: object) -> type:
    return type(f"Fake_{name}", (_Fake,), {"name": name, "aliases": aliases})


def test_a_plugin_alias_is_listed_and_resolves():
    with support.registered(support.make_plugin(_fake("test_aliased", ("TA-one",))), "aliased_plugin"):
        info = {m.name: m for m in vx.methods()}["test_aliased"]
        assert info.aliases == ("TA-one",)
        assert REGISTRY.explainer("ta_one").name == "test_aliased"
    with pytest.raises(vx.UnknownMethod):
        REGISTRY.explainer("ta_one")


@pytest.mark.parametrize(
    "aliases",
    [("ig",), ("GradCAM",), ("integrated-gradients",)],
)
def test_an_alias_claiming_another_methods_name_or_alias_is_refused(aliases):
    before = support.snapshot()
    with pytest.raises(vx.PluginError, match="clashes with .*integrated_gradients|clashes with .*gradcam") as caught:
        REGISTRY.register_plugin(support.make_plugin(_fake("test_clash", aliases)), name="clash_plugin")
    message = str(caught.value)
    assert "clash_plugin" in message and "vexplain.plugins." in message and "\n" not in message
    assert support.snapshot() == before


def test_two_plugins_with_one_alias_are_refused_naming_both():
    with support.registered(support.make_plugin(_fake("test_first", ("shared-alias",))), "first_plugin"):
        with pytest.raises(vx.PluginError, match="clashes") as caught:
            REGISTRY.register_plugin(support.make_plugin(_fake("test_second", ("Shared_Alias",))), name="second_plugin")
        assert "first_plugin" in str(caught.value) and "second_plugin" in str(caught.value)
        assert REGISTRY.explainer("sharedalias").name == "test_first"


@pytest.mark.parametrize("aliases", ["ig2", ("",), ("9lives",), ("a*b",), (3,)])
def test_malformed_aliases_are_refused(aliases):
    with pytest.raises(vx.PluginError, match="aliases must be a tuple of names"):
        REGISTRY.register_plugin(support.make_plugin(_fake("test_bad_alias", aliases)), name="bad_alias_plugin")


def test_vexplain_methods_shows_aliases(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["method", "aliases"]
    row = next(line for line in rows if line.startswith("integrated_gradients "))
    assert row.split()[1] == "ig"
    assert "gradcam++" in next(line for line in rows if line.startswith("gradcam_plusplus "))


def test_cli_evaluate_reports_an_unknown_method_with_a_suggestion(capsys, tmp_path):
    assert main(["evaluate", "--methods", "gradcm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "did you mean: gradcam" in err and len(err.strip().splitlines()) == 1
