"""The world's resources by kind: each module holds what one kind of resource does."""
