#!/usr/bin/env python3
"""Writes dense-protocol4.pkl: the data.pkl torch.save(sd, f, pickle_protocol=4) writes for a
state dict of 300 tensors named "0" to "299", each a 2x2 float32 view of its own 4-element
storage "0" to "299". That is the densest pickle torch.save writes for weights (short names,
small ints, one-byte MEMOIZE): limits_test.go checks weft's pickle limits leave it room.

torch is not installed here, so this reproduces what torch.save pickles with Python's own
pickle module: stub torch and torch._utils modules whose _rebuild_tensor_v2 and FloatStorage
pickle by name, a tensor whose __reduce_ex__ is torch.Tensor's for a plain CPU tensor, and a
persistent_id giving ('storage', FloatStorage, key, 'cpu', numel), as torch.save does.

Usage: python3 gen_dense_pickle.py > dense-protocol4.pkl
"""
import collections, io, pickle, sys, types

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils

def _rebuild_tensor_v2(*args): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2

class FloatStorage: pass
FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage

class Storage:
    def __init__(self, key, numel): self.key, self.numel = key, numel

class Tensor:
    def __init__(self, storage, shape, stride): self.storage, self.shape, self.stride = storage, shape, stride
    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, 0, self.shape, self.stride, False, collections.OrderedDict()))

class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None

sd = collections.OrderedDict((str(i), Tensor(Storage(str(i), 4), (2, 2), (2, 1))) for i in range(300))
buf = io.BytesIO()
Pickler(buf, protocol=4).dump(sd)
sys.stdout.buffer.write(buf.getvalue())
