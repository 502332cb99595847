"""How a model is trained: the LightningModule, its losses, checkpoints, schedules and the results board.

Configs name these classes by module, e.g. ``grokkit.train.schedule.SwitchHyperparameters``.
"""
