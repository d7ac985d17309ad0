"""Modules that are also the API function of their name: `tgdfer.train(pipe)` and `tgdfer.train.TrainConfig`.

`tgdfer.extract`, `tgdfer.train` and `tgdfer.evaluate` are modules; Python binds a package's
submodule to the package attribute of the same name, which would hide a function
`tgdfer.train`. Instead, each of these modules calls `make_callable(__name__)` at its end: its
class becomes `CallableModule` (documented Python: a module's __class__ may be set to a
ModuleType subclass), and calling it calls `tgdfer.api.<name>`. Attribute access is unchanged.
"""

from __future__ import annotations

import sys
import types


class CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    sys.modules[module_name].__class__ = CallableModule
