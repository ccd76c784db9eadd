"""Route templates match request paths the way the Functions host does."""

import pytest

from devstack.routes import RouteTemplate, RouteTemplateError, ordered


def test_parameters_are_extracted_and_percent_decoded() -> None:
    template = RouteTemplate.compile("pools/{pool}/addresses/{name}")
    assert template.match("pools/web%2Fpool/addresses/a-1") == {"pool": "web/pool", "name": "a-1"}
    assert template.match("POOLS/p/ADDRESSES/x") == {"pool": "p", "name": "x"}  # literals ignore case
    assert template.match("pools/p/addresses") is None
    assert template.match("pools/p/addresses/x/extra") is None


def test_optional_parameter_may_be_absent_with_its_slash() -> None:
    template = RouteTemplate.compile("pools/{pool?}")
    assert template.match("pools") == {}
    assert template.match("pools/") == {}
    assert template.match("pools/web") == {"pool": "web"}


def test_catch_all_takes_the_rest_of_the_path() -> None:
    template = RouteTemplate.compile("pools/{*pool_id}")
    full_id = "subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb"
    assert template.match(f"pools/{full_id}") == {"pool_id": full_id}


def test_constraints_reject_values_that_do_not_fit() -> None:
    template = RouteTemplate.compile("items/{id:int}")
    assert template.match("items/42") == {"id": "42"}
    assert template.match("items/abc") is None
    assert RouteTemplate.compile("x/{g:guid}").match("x/not-a-guid") is None


def test_default_value_fills_an_absent_parameter() -> None:
    assert RouteTemplate.compile("audit/{mode=full}").match("audit") == {"mode": "full"}


def test_literal_routes_are_tried_before_parameter_routes() -> None:
    general = RouteTemplate.compile("pools/{pool}")
    specific = RouteTemplate.compile("pools/summary")
    catch_all = RouteTemplate.compile("{*rest}")
    assert ordered([catch_all, general, specific]) == [specific, general, catch_all]


@pytest.mark.parametrize("bad", ["a/{x", "a/{x}/{x}", "a/{*x}/b", "a//b", "a/{x:nosuch}"])
def test_bad_templates_are_reported(bad: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.compile(bad)
