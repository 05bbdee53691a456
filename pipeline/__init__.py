"""Audit and usage pipeline for Azure OpenAI traffic through Azure API Management."""

__version__ = "0.1.0"
