// Registers nequip's pair styles `nequip` and `allegro` with LAMMPS's
// `plugin load` (written by mtsmlip; the pair styles are pair_nequip_allegro's).
#include "lammpsplugin.h"
#include "version.h"

#include "pair_nequip_allegro.h"

using namespace LAMMPS_NS;

static Pair *nequip_creator(LAMMPS *lmp) { return new PairNequIPAllegro<true>(lmp); }
static Pair *allegro_creator(LAMMPS *lmp) { return new PairNequIPAllegro<false>(lmp); }

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_regfunc register_plugin = (lammpsplugin_regfunc) regfunc;
  lammpsplugin_t plugin;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.author = "MIR group (pair_nequip_allegro); plugin build by mtsmlip";
  plugin.handle = handle;

  plugin.name = "nequip";
  plugin.info = "NequIP message-passing models (.nequip.pt2), one MPI rank";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &nequip_creator;
  (*register_plugin)(&plugin, lmp);

  plugin.name = "allegro";
  plugin.info = "Allegro strictly local models (.nequip.pt2), any number of MPI ranks";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &allegro_creator;
  (*register_plugin)(&plugin, lmp);
}
