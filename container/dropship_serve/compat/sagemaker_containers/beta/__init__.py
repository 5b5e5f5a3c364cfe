"""sagemaker_containers.beta: where the framework images' helpers are imported from."""
