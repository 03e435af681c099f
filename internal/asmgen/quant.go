package main

func genQuant() {}
