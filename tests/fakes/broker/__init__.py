"""The one fake broker of the unit tests, for the wallet and for the vendors.

:class:`FakeBroker` (model.py) is an in-process broker: one coin table
(coins.py: each coin's touchstone, its chain when the fake made it, its
custody), one signing key, one certificate book, one ``down`` switch and one
call counter. It has two faces:

* the wallet's: it is a ``BrokerApi`` (``broker.factory`` is the wallet's
  broker factory), with readers, tokens, balances, sales and spending
  limits; :class:`FakeBrokerServicer` (servicer.py) puts that face behind a
  real gRPC server, for the wallet's BrokerClient and CLI;
* the vendors': ``broker.client(vendor_id)`` is that vendor's
  ``BrokerClient`` and ``broker.wallet_client(vendor_id)`` adds the
  server-side wallet RPCs (clients.py), over the custody rules of the
  model (acquire, hand-off, reclaim, checkpoint).

So a coin a wallet bought can be acquired by a vendor. The fixtures that
make one broker on one FakeClock are in fixtures.py; the fake newspaper is
tests/fakes/vendor.py, the page server tests/fakes/pages.py.
"""

from tests.fakes.broker.clients import FakeBrokerClient, FakeWalletClient
from tests.fakes.broker.coins import FakeCoin
from tests.fakes.broker.model import DAY_MS, FakeBroker, VendorEntry
from tests.fakes.broker.servicer import FakeBrokerServicer

__all__ = [
    "DAY_MS",
    "FakeBroker",
    "FakeBrokerClient",
    "FakeBrokerServicer",
    "FakeCoin",
    "FakeWalletClient",
    "VendorEntry",
]
