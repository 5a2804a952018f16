"""Cognito user pools in moto, for the integration tests (tests/it/moto.rs).

Starts moto's server on 127.0.0.1 (a free port the OS picks), creates a user
pool with two app clients, groups and users, plus a second pool, signs the
users in with ADMIN_USER_PASSWORD_AUTH (moto's real InitiateAuth code path),
prints one JSON line with the endpoint, the pools and the tokens, then serves
until its standard input closes (the test holding it has ended).
"""

import json
import logging
import sys

import boto3
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
FLOWS = ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
# moto puts standard attributes in the ID token only when the client may read them.
READ = ["email", "email_verified", "custom:tenant"]
USERS = {
    "alice": {"groups": ["admins"], "email": "alice@example.com", "tenant": "acme"},
    "carol": {"groups": ["staff"], "email": "carol@example.com", "tenant": "globex"},
    "bob": {"groups": [], "email": None, "tenant": None},
}


def make_pool(idp, name, clients, users):
    """Creates a pool, its clients and users; returns (pool id, client ids, tokens by client and user)."""
    pool_id = idp.create_user_pool(
        PoolName=name,
        Schema=[{"Name": "tenant", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    client_ids = {
        c: idp.create_user_pool_client(
            UserPoolId=pool_id, ClientName=c, ExplicitAuthFlows=FLOWS, ReadAttributes=READ
        )["UserPoolClient"]["ClientId"]
        for c in clients
    }
    for group in ["admins", "staff"]:
        idp.create_group(UserPoolId=pool_id, GroupName=group)
    tokens = {}
    for username in users:
        u = USERS[username]
        attributes = []
        if u["email"]:
            attributes += [{"Name": "email", "Value": u["email"]}, {"Name": "email_verified", "Value": "true"}]
        if u["tenant"]:
            attributes.append({"Name": "custom:tenant", "Value": u["tenant"]})
        idp.admin_create_user(
            UserPoolId=pool_id, Username=username, UserAttributes=attributes, MessageAction="SUPPRESS"
        )
        password = f"{username.capitalize()}-Passw0rd!"
        idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
        for group in u["groups"]:
            idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
        for client, client_id in client_ids.items():
            result = idp.admin_initiate_auth(
                UserPoolId=pool_id,
                ClientId=client_id,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )["AuthenticationResult"]
            tokens.setdefault(client, {})[username] = {
                "id_token": result["IdToken"],
                "access_token": result["AccessToken"],
            }
    return pool_id, client_ids, tokens


def main() -> None:
    # Request logs would only fill the test's log file.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    idp = boto3.client(
        "cognito-idp",
        region_name=REGION,
        endpoint_url=endpoint,
        # moto checks no signature; boto3 only needs something to sign with.
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pool_id, clients, tokens = make_pool(idp, "oidc-bff-tests", ["app", "other-app"], list(USERS))
    other_pool_id, _, other_tokens = make_pool(idp, "another-pool", ["app"], ["alice"])
    out = {
        "endpoint": endpoint,
        "region": REGION,
        "pool_id": pool_id,
        "clients": clients,
        "tokens": tokens,
        "other_pool_id": other_pool_id,
        "other_pool_tokens": other_tokens["app"],
    }
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
