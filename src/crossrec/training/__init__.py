"""Training: the Trainer that runs the stages of every TorchRecommender."""
