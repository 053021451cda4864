"""The legacy HCS JSON schema 1.0: process-isolated containers on hosts before Windows Server
2019 (build 17763), where HcsCreateComputeSystem takes a ``ContainerConfig``.

The models are generated from ``tools/schema/hcs-schema1.json`` (hcsshim's
``internal/hcs/schema1``) and behave like the 2.x ones: constructing is strict, parsing is
lenient, ``from_json(text, strict=True)`` rejects unknown members. They live in their own
namespace because several names (``Layer``, ``PropertyQuery``, ``Statistics``...) mean other
documents in 2.x.

>>> from pyhcs.schema import v1, check_version, config_version
>>> doc = v1.ContainerConfig(SystemType="Container", Name="c1", LayerFolderPath="C:\\\\l",
...                          Layers=[v1.Layer(ID="7c8a1f2e-0000-4000-8000-000000000001",
...                                           Path="C:\\\\base")], HvPartition=False)
>>> config_version(doc.to_json())
(1, 0)
>>> [str(i) for i in check_version(doc, "2.1")]  # doctest: +NORMALIZE_WHITESPACE
['a legacy schema 1.0 document (ContainerConfig, 1.0) where schema 2.1 is expected: major
  versions are not compatible']
"""

from pyhcs.schema import _models_v1
from pyhcs.schema._models_v1 import *  # noqa: F403  (the generated module's __all__)

# In a form type checkers follow (pyright reads `+= <module>.__all__`).
__all__: list[str] = []
__all__ += _models_v1.__all__
