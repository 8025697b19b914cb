"""mtsmlip models where users run them: i-PI (force clients and inputs for the
learned split) and nequip's own packaged-model format."""
