"""A notebook exported as a script: its top level loads data that is not there, so importing it fails."""

import pickle

with open("cifar-10-batches-py/data_batch_1", "rb") as stream:
    batch = pickle.load(stream)


def train_manual(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    pass
