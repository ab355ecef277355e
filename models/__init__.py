"""Model code: the OFMClassifier network, Keras weight import, training and the registry."""
