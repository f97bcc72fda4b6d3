"""moto's server, answering one request at a time.

moto's own `moto_server` serves each request on a thread without locking, so its conditional
updates are not atomic under concurrency. Served single-threaded, moto cannot race with
itself, and a concurrency test tests our code rather than moto's.
"""
import argparse
import copy
import functools
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


class _NoTableCopy(types.ModuleType):
    """`copy` for moto's DynamoDB backend, with the whole-table backup of a transaction skipped.

    moto's TransactWriteItems backs up every table it touches with `copy.deepcopy`, once per
    operation, to roll back on a cancellation: a 100-operation transaction (the usage rollups'
    consumer writes those) copied the table 100 times, so time and memory grew with the table
    times the operations, and moto reached 22 GB within a thousand requests.
    `_transact_backing_up_items` backs up just the items the transaction names instead, which
    rolls back the same.
    """

    def __init__(self):
        super().__init__("copy")
        self.in_transaction = False

    def deepcopy(self, x, memo=None):
        if self.in_transaction and isinstance(x, Table):
            return x
        return copy.deepcopy(x, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


_copy = _NoTableCopy()
dynamodb_models.copy = _copy
_transact = dynamodb_models.DynamoDBBackend.transact_write_items


def _keys(table, op):
    attrs = op.get("Key") or op.get("Item") or {}
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


@functools.wraps(_transact)
def _transact_backing_up_items(self, transact_items):
    backups = []
    for item in transact_items:
        op = next(iter(item.values()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        try:
            hash_key, range_key = _keys(table, op)
        except KeyError:
            continue
        backups.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    _copy.in_transaction = True
    try:
        return _transact(self, transact_items)
    except Exception:
        for table, hash_key, range_key, old in reversed(backups):
            if range_key is None:
                if old is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = old
            elif old is None:
                table.items.get(hash_key, {}).pop(range_key, None)
            else:
                table.items[hash_key][range_key] = old
        raise
    finally:
        _copy.in_transaction = False


dynamodb_models.DynamoDBBackend.transact_write_items = _transact_backing_up_items


parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()

run_simple(args.host, args.port, DomainDispatcherApplication(create_backend_app), threaded=False, processes=1, request_handler=MotoRequestHandler)
