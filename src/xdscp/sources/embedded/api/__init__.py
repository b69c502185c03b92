"""The embedded registry's HTTP write and read APIs: Nacos' naming Open API and xdscp's own /v1."""
