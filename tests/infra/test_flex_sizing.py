"""Flex Consumption sizing set on purpose: HTTP concurrency above Python's default of 1, bounded fan-out."""

from __future__ import annotations

from tests.infra.bicep_tree import INFRA_DIR, MAIN_BICEP, body, one_resource, parse

FUNCTIONAPP = INFRA_DIR / "modules" / "functionapp.bicep"
PYTHON_DEFAULT_HTTP_CONCURRENCY = 1  # functions-concurrency#http-trigger-concurrency, any instance size
PLATFORM_MAX_INSTANCES = (1, 1000)  # event-driven-scaling#limit-scale-out


def scale() -> dict:
    site = body(one_resource(FUNCTIONAPP, "Microsoft.Web/sites"))
    return site["properties"]["functionAppConfig"]["scaleAndConcurrency"]


def bounds(tree: dict, name: str) -> tuple[int, int]:
    decorators = {d["type"]: d["argument"] for d in tree["parameters"][name]["decorators"]}
    return decorators["min_value"], decorators["max_value"]


def test_http_group_concurrency_is_set_from_a_parameter() -> None:
    assert scale()["triggers"] == {"http": {"perInstanceConcurrency": "httpPerInstanceConcurrency"}}
    passed = body(parse(MAIN_BICEP)["modules"]["functionApp"])["params"]
    assert passed["httpPerInstanceConcurrency"] == "httpPerInstanceConcurrency"
    assert passed["maximumInstanceCount"] == "maximumInstanceCount"


def test_defaults_take_concurrent_calls_on_one_instance_and_bound_the_fan_out() -> None:
    main = parse(MAIN_BICEP)["parameters"]
    assert main["httpPerInstanceConcurrency"]["default"] > PYTHON_DEFAULT_HTTP_CONCURRENCY
    assert main["maximumInstanceCount"]["default"] == 10
    assert main["httpPerInstanceConcurrency"]["default"] == 8


def test_bounds_match_the_documented_platform_range() -> None:
    for tree in (parse(MAIN_BICEP), parse(FUNCTIONAPP)):
        assert bounds(tree, "maximumInstanceCount") == PLATFORM_MAX_INSTANCES
        assert bounds(tree, "httpPerInstanceConcurrency") == (1, 1000)


def test_the_template_cites_the_documentation_it_relies_on() -> None:
    text = FUNCTIONAPP.read_text()
    assert "functions-concurrency#http-trigger-concurrency" in text
    assert "event-driven-scaling#limit-scale-out" in text
