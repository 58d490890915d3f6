"""Schedulers that are not in diffusers. ``ResShiftScheduler`` (the residual-shift bridge of spire-tiny) is a
diffusers ``SchedulerMixin``, saved in a model folder's ``scheduler/`` as ``["spire_ir.schedulers",
"ResShiftScheduler"]``; diffusers finds the loading method through ``SchedulerMixin`` in this namespace."""

from diffusers import SchedulerMixin  # noqa: F401 - diffusers looks the base class up here to load the folder

from spire_ir.schedulers.resshift import ResShiftScheduler, ResShiftSchedulerOutput, noise_timestep

__all__ = ["ResShiftScheduler", "ResShiftSchedulerOutput", "noise_timestep"]
