"""The users resource of SPEC §6, against the real service process and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg2.extensions
import pytest

from services.users.tests.conftest import SignedClient, owner_rows


@pytest.fixture
def tenant(make_tenant: Callable[[], int]) -> int:
    return make_tenant()


def test_form_encoded_post_creates_a_user_like_the_tutorial(api: SignedClient, tenant: int) -> None:
    # curl -d "name=Alice" sends exactly this: form-encoded, to /users/ with a trailing slash.
    response = api.request(
        "POST",
        "/users/",
        tenant,
        content=b"name=Alice",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Alice" and body["email"] is None and body["tenant_id"] == tenant
    assert set(body) == {"id", "tenant_id", "name", "email", "created_at", "updated_at"}


def test_form_post_with_empty_email_means_no_email(api: SignedClient, tenant: int) -> None:
    response = api.request("POST", "/users", tenant, data={"name": "Bob", "email": ""})
    assert response.status_code == 201 and response.json()["email"] is None


def test_json_post_then_get_returns_the_same_user(api: SignedClient, tenant: int) -> None:
    created = api.request(
        "POST", "/users", tenant, json={"name": "Carol", "email": "carol@x.example"}
    )
    assert created.status_code == 201
    user = created.json()
    fetched = api.request("GET", f"/users/{user['id']}", tenant)
    assert fetched.status_code == 200 and fetched.json() == user


def test_both_collection_paths_answer_without_redirect(api: SignedClient, tenant: int) -> None:
    api.request("POST", "/users", tenant, json={"name": "Dan"})
    for path in ("/users", "/users/"):
        response = api.request("GET", path, tenant)
        assert response.status_code == 200 and [u["name"] for u in response.json()] == ["Dan"]


def test_listing_pages_by_id_with_a_relative_next_link(api: SignedClient, tenant: int) -> None:
    ids = [
        api.request("POST", "/users", tenant, json={"name": f"u{n}"}).json()["id"] for n in range(5)
    ]
    seen: list[int] = []
    target = "/users?limit=2"
    pages = 0
    while target:
        response = api.request("GET", target, tenant)
        assert response.status_code == 200
        seen += [u["id"] for u in response.json()]
        pages += 1
        link = response.headers.get("link")
        if link is None:
            break
        match = re.fullmatch(r'<(/users\?limit=2&after=\d+)>; rel="next"', link)
        assert match, link
        target = match.group(1)
    assert seen == sorted(ids) and pages == 3


def test_no_next_link_when_the_page_holds_the_rest(api: SignedClient, tenant: int) -> None:
    for n in range(2):
        api.request("POST", "/users", tenant, json={"name": f"u{n}"})
    response = api.request("GET", "/users?limit=2", tenant)
    assert len(response.json()) == 2 and "link" not in response.headers


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=x", "after=-1", "after=x", "after=9223372036854775808"]
)
def test_out_of_range_paging_is_422(api: SignedClient, tenant: int, query: str) -> None:
    response = api.request("GET", f"/users?{query}", tenant)
    assert response.status_code == 422 and "detail" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 201},
        {"name": "nul\x00byte"},
        {},
        {"name": "Eve", "email": "not-an-email"},
        {"name": "Eve", "role": "admin"},
        ["not", "an", "object"],
    ],
)
def test_invalid_user_is_422_with_json_detail(api: SignedClient, tenant: int, body: object) -> None:
    response = api.request("POST", "/users", tenant, json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert api.request("GET", "/users", tenant).json() == []


def test_malformed_json_is_422(api: SignedClient, tenant: int) -> None:
    response = api.request(
        "POST", "/users", tenant, content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"]


def test_name_of_200_characters_is_accepted(api: SignedClient, tenant: int) -> None:
    response = api.request("POST", "/users", tenant, json={"name": "é" * 200})
    assert response.status_code == 201


def test_duplicate_email_in_one_tenant_is_409_case_insensitively(
    api: SignedClient, tenant: int
) -> None:
    assert (
        api.request(
            "POST", "/users", tenant, json={"name": "A", "email": "Same@X.example"}
        ).status_code
        == 201
    )
    response = api.request("POST", "/users", tenant, json={"name": "B", "email": "same@x.EXAMPLE"})
    assert response.status_code == 409 and response.json()["detail"]
    assert len(api.request("GET", "/users", tenant).json()) == 1


def test_same_email_in_two_tenants_is_fine(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    for tenant in (make_tenant(), make_tenant()):
        response = api.request(
            "POST", "/users", tenant, json={"name": "A", "email": "shared@x.example"}
        )
        assert response.status_code == 201


def test_patch_changes_only_the_given_fields(api: SignedClient, tenant: int) -> None:
    user = api.request(
        "POST", "/users", tenant, json={"name": "Old", "email": "o@x.example"}
    ).json()
    response = api.request("PATCH", f"/users/{user['id']}", tenant, json={"name": "New"})
    assert response.status_code == 200
    patched = response.json()
    assert patched["name"] == "New" and patched["email"] == "o@x.example"
    assert (
        patched["updated_at"] > user["updated_at"] and patched["created_at"] == user["created_at"]
    )
    removed = api.request("PATCH", f"/users/{user['id']}", tenant, json={"email": None}).json()
    assert removed["email"] is None and removed["name"] == "New"


def test_patch_to_a_taken_email_is_409_and_changes_nothing(api: SignedClient, tenant: int) -> None:
    api.request("POST", "/users", tenant, json={"name": "A", "email": "a@x.example"})
    b = api.request("POST", "/users", tenant, json={"name": "B", "email": "b@x.example"}).json()
    response = api.request(
        "PATCH", f"/users/{b['id']}", tenant, json={"name": "B2", "email": "A@x.example"}
    )
    assert response.status_code == 409
    assert api.request("GET", f"/users/{b['id']}", tenant).json() == b


@pytest.mark.parametrize("body", [{"name": None}, {"name": ""}, {"email": "nope"}, {"id": 5}])
def test_invalid_patch_is_422(api: SignedClient, tenant: int, body: dict[str, object]) -> None:
    user = api.request("POST", "/users", tenant, json={"name": "Keep"}).json()
    response = api.request("PATCH", f"/users/{user['id']}", tenant, json=body)
    assert response.status_code == 422
    assert api.request("GET", f"/users/{user['id']}", tenant).json() == user


def test_delete_removes_the_user_then_404(api: SignedClient, tenant: int) -> None:
    user = api.request("POST", "/users", tenant, json={"name": "Gone"}).json()
    assert api.request("DELETE", f"/users/{user['id']}", tenant).status_code == 204
    assert api.request("GET", f"/users/{user['id']}", tenant).status_code == 404
    assert api.request("DELETE", f"/users/{user['id']}", tenant).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_id_is_404_with_json_detail(api: SignedClient, tenant: int, method: str) -> None:
    kwargs = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = api.request(method, "/users/999999999", tenant, **kwargs)
    assert response.status_code == 404 and response.json() == {"detail": "user not found"}


@pytest.mark.parametrize("path", ["/users/abc", "/users/0", "/users/99999999999999999999999"])
def test_malformed_id_is_422(api: SignedClient, tenant: int, path: str) -> None:
    assert api.request("GET", path, tenant).status_code == 422


def test_openapi_documents_every_status(api: SignedClient) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    expected = {
        ("/users", "get"): {"200", "401", "422", "503"},
        ("/users", "post"): {"201", "401", "404", "409", "422", "503"},
        ("/users/{user_id}", "get"): {"200", "401", "404", "422", "503"},
        ("/users/{user_id}", "patch"): {"200", "401", "404", "409", "422", "503"},
        ("/users/{user_id}", "delete"): {"204", "401", "404", "422", "503"},
    }
    for (path, method), statuses in expected.items():
        assert set(paths[path][method]["responses"]) == statuses, (path, method)
    body = paths["/users"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(body)


def test_health_endpoints_need_no_signature(api: SignedClient) -> None:
    assert api.client.get("/healthz").status_code == 200
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_signed_request_for_a_deleted_tenant_writes_nothing(
    api: SignedClient, tenant: int, owner: psycopg2.extensions.connection
) -> None:
    # The gateway vouched for the tenant, then it was deleted before the request arrived.
    owner_rows(owner, "DELETE FROM tenants WHERE id = %s", tenant)
    response = api.request("POST", "/users", tenant, json={"name": "Orphan"})
    assert response.status_code == 404 and response.json() == {"detail": "tenant not found"}
    assert owner_rows(owner, "SELECT count(*) FROM users WHERE tenant_id = %s", tenant) == [(0,)]


def test_ids_are_numbered_per_tenant_so_other_tenants_activity_stays_invisible(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    a, b = make_tenant(), make_tenant()

    def create(tenant: int, name: str) -> int:
        response = api.request("POST", "/users", tenant, json={"name": name})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    first = create(a, "a-1")
    b_ids = [create(b, f"b-{n}") for n in range(50)]
    second = create(a, "a-2")
    # With one shared sequence A would see a gap of 50 here: B's activity, counted.
    assert (first, second) == (1, 2)
    assert b_ids == list(range(1, 51))


def test_deleted_id_is_never_handed_out_again(api: SignedClient, tenant: int) -> None:
    for name in ("first", "second"):
        api.request("POST", "/users", tenant, json={"name": name})
    assert api.request("DELETE", "/users/2", tenant).status_code == 204
    # A client holding the old id 2 must not find somebody else under it.
    assert api.request("POST", "/users", tenant, json={"name": "third"}).json()["id"] == 3
    assert api.request("GET", "/users/2", tenant).status_code == 404
