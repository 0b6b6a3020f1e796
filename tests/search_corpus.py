"""Three small documents (Markdown, text, CSV) that the search tests add, under CPython and in the page."""

FILES = {
    "volcanoes.md": "# Volcanoes\n\nMount Etna in Sicily is one of the most active volcanoes in the world.\n\n"
                    "Lava flows from Etna have reached the town of Catania several times.\n",
    "bread.txt": "To bake bread, mix flour, water, salt and yeast.\n\nLet the dough rise for two hours, then bake "
                 "it at 230 degrees for forty minutes.\n",
    "trains.csv": "line,city,opened\nMetro Line 1,Paris,1900\nU-Bahn U1,Berlin,1902\nTube Central line,London,1900\n",
}
